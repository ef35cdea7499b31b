-- Tables of the benchmark: one invoice table per numbering method, each row
-- about 200 bytes.  max() + 1 has no key, so that its duplicates can be
-- counted instead of failing.
CREATE EXTENSION IF NOT EXISTS invoice_seq;
DROP TABLE IF EXISTS inv_nextval, inv_counter, inv_max_plus_one, inv_two_phase,
                     inv_one_step, counters;
DROP SEQUENCE IF EXISTS inv_seq;
CREATE SEQUENCE inv_seq;
CREATE TABLE inv_nextval (no bigint PRIMARY KEY, customer text NOT NULL,
                          amount numeric NOT NULL, created_at timestamptz NOT NULL,
                          payload text NOT NULL);
CREATE TABLE inv_counter (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE inv_two_phase (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE inv_one_step (LIKE inv_nextval INCLUDING ALL);
CREATE TABLE inv_max_plus_one (LIKE inv_nextval);
CREATE TABLE counters (name text PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counters VALUES ('inv', 0);
