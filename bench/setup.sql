-- Tables of the benchmark: one invoice table per numbering method, each row
-- about 200 bytes.  max() + 1 has no key, so that its duplicates can be
-- counted instead of failing.
CREATE EXTENSION IF NOT EXISTS invoice_seq;
DROP TABLE IF EXISTS inv_nextval, inv_counter, inv_max_plus_one, inv_two_phase,
                     inv_one_step, counters, inv_ideal, ideal_ledger, inv_compact,
                     inv_invoice_nextval, inv_invoice_one_step,
                     line_invoice_nextval, line_invoice_one_step,
                     inv_ideal_two_phase, ideal_two_phase_ledger, inv_seed000,
                     inv_tenants, tenants_checked;
DROP SEQUENCE IF EXISTS inv_seq;
CREATE SEQUENCE inv_seq;
CREATE TABLE inv_nextval (no bigint PRIMARY KEY, customer text NOT NULL,
                          amount numeric NOT NULL, created_at timestamptz NOT NULL,
                          payload text NOT NULL);
CREATE TABLE inv_counter (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE inv_two_phase (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE inv_one_step (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE inv_compact (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE inv_max_plus_one (LIKE inv_nextval);
CREATE TABLE counters (name text PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counters VALUES ('inv', 0);

-- The ideal: besides its invoice, a ~100-byte row per number under a
-- 3-column primary key, as a ledger has, written by the same statement.
CREATE TABLE inv_ideal (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE ideal_ledger (series_id integer NOT NULL, period text NOT NULL,
                           invoice_no bigint NOT NULL, display_no text NOT NULL,
                           status text NOT NULL, external_ref text,
                           issued_at timestamptz NOT NULL, issued_by text NOT NULL,
                           PRIMARY KEY (series_id, period, invoice_no));

-- A realistic invoice: a header (as above) and 5 lines of ~100 bytes.
CREATE TABLE inv_invoice_nextval (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE inv_invoice_one_step (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE line_invoice_nextval (invoice_no bigint NOT NULL, line_no integer NOT NULL,
                                   product text NOT NULL, quantity numeric NOT NULL,
                                   price numeric NOT NULL, description text NOT NULL,
                                   PRIMARY KEY (invoice_no, line_no));
CREATE TABLE line_invoice_one_step (LIKE line_invoice_nextval INCLUDING ALL);

-- The two-phase ideal: a ledger-like row reserved under a unique key by
-- one commit, marked issued by the statement that inserts the invoice.
CREATE TABLE inv_ideal_two_phase (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE ideal_two_phase_ledger (LIKE ideal_ledger INCLUDING ALL);
ALTER TABLE ideal_two_phase_ledger RENAME COLUMN display_no TO idempotency_key;
CREATE UNIQUE INDEX ON ideal_two_phase_ledger (series_id, idempotency_key);

-- Seed 000's design: the invoice row, pending until the call returns.
CREATE TABLE inv_seed000 (LIKE inv_nextval INCLUDING ALL, status text NOT NULL);

-- Tenants: one invoice table for every tenant's series, keyed by series
-- and number.  It holds each tenant's history too (bench/run writes it), so
-- that a series' issued numbers are exactly its rows here.  tenants_checked:
-- per chain of a tenant, the highest number the invariants have covered.
CREATE TABLE inv_tenants (series text NOT NULL, no bigint NOT NULL, customer text NOT NULL,
                          amount numeric NOT NULL, created_at timestamptz NOT NULL,
                          payload text NOT NULL, PRIMARY KEY (series, no));
CREATE TABLE tenants_checked (series_id integer NOT NULL, period text COLLATE "C" NOT NULL,
                              series text NOT NULL, hi bigint NOT NULL,
                              PRIMARY KEY (series_id, period));
