/*
 * invoice_seq--1.1--1.2.sql: numbers are taken where they are asked for.
 *
 * A number comes from an allocator in shared memory and its ledger row is
 * written by the transaction that takes it.  next_invoice_no() records its
 * number as issued; a number whose transaction does not commit leaves no
 * row, and is handed out again.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invoice_seq UPDATE TO '1.2'" to load this file. \quit

-- A 1.1 one-step number still 'reserved' was never issued: the transaction
-- that took it did not commit (one that is still running has updated the
-- row, and this statement waits for it).  1.2 hands out only numbers that
-- have no row, so it is voided, with the reason.
UPDATE invoice_seq.ledger_entry
SET status = 'voided',
    voided_at = pg_catalog.now(),
    voided_by = 'invoice_seq',
    void_reason = 'not issued: taken with next_invoice_no() by a transaction that did not commit; voided by the update to invoice_seq 1.2'
WHERE status OPERATOR(pg_catalog.=) 'reserved' AND holder_xid IS NOT NULL;

-- Only 1.1's recycling searched it, and it made every confirm a non-HOT
-- update (status is in its predicate).
DROP INDEX invoice_seq.ledger_entry_held;

-- holder_xid now names the transaction that issued a one-step number.
COMMENT ON COLUMN invoice_seq.ledger_entry.holder_xid IS
    'the transaction that issued a number taken with next_invoice_no(); NULL for a reservation';

-- confirm_invoice_no returns the number, so that the confirm and the
-- application's own row fit in one statement.
DROP FUNCTION invoice_seq.confirm_invoice_no(text, bigint, text, text);
CREATE FUNCTION invoice_seq.confirm_invoice_no(
    series       text,
    invoice_no   bigint,
    external_ref text DEFAULT NULL,
    period       text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'invoice_seq_confirm_invoice_no'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

-- The free numbers of the caller's series: handed to a transaction that did
-- not commit, and handed out again by the next caller of their period.
CREATE FUNCTION invoice_seq.recyclable(
    OUT series_id  integer,
    OUT period     text,
    OUT invoice_no bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'invoice_seq_recyclable'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

-- The ledger stays dense: a free number shows as 'recyclable'.
CREATE OR REPLACE VIEW invoice_seq.ledger WITH (security_barrier) AS
SELECT s.name AS series, e.period, e.invoice_no, e.display_no, e.status,
       e.idempotency_key, e.external_ref, e.void_reason,
       e.reserved_at, e.reserved_by, e.confirmed_at, e.confirmed_by,
       e.voided_at, e.voided_by,
       e.holder_xid IS NOT NULL AS one_step
FROM invoice_seq.ledger_entry e
JOIN invoice_seq.series_def s ON s.id OPERATOR(pg_catalog.=) e.series_id
WHERE pg_catalog.pg_has_role(s.owner::pg_catalog.oid, 'MEMBER')
UNION ALL
SELECT s.name, f.period, f.invoice_no, NULL, 'recyclable',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM invoice_seq.recyclable() f
JOIN invoice_seq.series_def s ON s.id OPERATOR(pg_catalog.=) f.series_id
WHERE pg_catalog.pg_has_role(s.owner::pg_catalog.oid, 'MEMBER');
