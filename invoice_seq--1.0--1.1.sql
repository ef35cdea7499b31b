/*
 * invoice_seq--1.0--1.1.sql: one-step numbering, chronological order, the
 * invoice_ledger table access method, and series owners (tenants)
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invoice_seq UPDATE TO '1.1'" to load this file. \quit

-- Within a (series, period), a higher number is never issued on an earlier
-- day than a lower one.  On by default, also for existing series.
ALTER TABLE invoice_seq.series_def
    ADD COLUMN chronological boolean NOT NULL DEFAULT true;

-- Each series belongs to a role; its members, and only they, may use it.
-- Existing series go to the role that created them if it still exists,
-- else to the extension's owner.  regrole dumps and restores by name.
ALTER TABLE invoice_seq.series_def ADD COLUMN owner regrole;
UPDATE invoice_seq.series_def s
SET owner = COALESCE(
        (SELECT r.oid FROM pg_catalog.pg_roles r
         WHERE r.rolname OPERATOR(pg_catalog.=) s.created_by),
        (SELECT n.nspowner FROM pg_catalog.pg_namespace n
         WHERE n.nspname OPERATOR(pg_catalog.=) 'invoice_seq'))::pg_catalog.regrole;
ALTER TABLE invoice_seq.series_def ALTER COLUMN owner SET NOT NULL;

-- The transaction that asked for a number with next_invoice_no().  The
-- number is issued if that transaction commits; if it ends otherwise, the
-- number is handed out again.  NULL for two-phase reservations.
ALTER TABLE invoice_seq.ledger_entry
    ADD COLUMN holder_xid xid8,
    ADD CHECK (holder_xid IS NULL OR idempotency_key IS NULL);

-- One-step numbers not (yet) issued: those of open transactions, and those
-- the sequencer may hand out again.  Small, whatever the ledger's size.
CREATE INDEX ledger_entry_held
    ON invoice_seq.ledger_entry (series_id, period, invoice_no)
    WHERE status = 'reserved' AND holder_xid IS NOT NULL;

-- The ledger's rows are never deleted or rewritten, whoever asks: see
-- src/ledger_am.c.  Applications may use it for tables of their own.
CREATE FUNCTION invoice_seq.invoice_ledger_handler(internal)
RETURNS table_am_handler
AS 'MODULE_PATHNAME', 'invoice_seq_ledger_handler'
LANGUAGE C;

CREATE ACCESS METHOD invoice_ledger TYPE TABLE
    HANDLER invoice_seq.invoice_ledger_handler;
REVOKE ALL ON FUNCTION invoice_seq.invoice_ledger_handler(internal) FROM PUBLIC;

ALTER TABLE invoice_seq.ledger_entry SET ACCESS METHOD invoice_ledger;

DROP FUNCTION invoice_seq.create_series(text, bigint, text, text, interval, text);
DROP FUNCTION invoice_seq.alter_series(text, text, interval);

CREATE FUNCTION invoice_seq.create_series(
    series        text,
    start_at      bigint DEFAULT 1,
    reset         text DEFAULT 'never',
    format        text DEFAULT '{n}',
    stale_after   interval DEFAULT '15 minutes',
    time_zone     text DEFAULT 'UTC',
    chronological boolean DEFAULT true,
    owner         regrole DEFAULT pg_catalog.to_regrole(pg_catalog.quote_ident(CURRENT_USER)))
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_create_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.alter_series(
    series        text,
    format        text DEFAULT NULL,
    stale_after   interval DEFAULT NULL,
    chronological boolean DEFAULT NULL,
    owner         regrole DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_alter_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION invoice_seq.create_series(text, bigint, text, text, interval, text, boolean, regrole),
                       invoice_seq.alter_series(text, text, interval, boolean, regrole)
    FROM PUBLIC;

--
-- One-step numbering, in the caller's transaction.
--
CREATE FUNCTION invoice_seq.next_invoice_no(series text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'invoice_seq_next_invoice_no'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.next_invoice(
    series         text,
    OUT series     text,
    OUT period     text,
    OUT invoice_no bigint,
    OUT display_no text)
RETURNS record
AS 'MODULE_PATHNAME', 'invoice_seq_next_invoice'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

--
-- Audit.  Each role sees the series it may use, and their entries: the
-- views filter on membership of the series' owner, and are security
-- barriers, so that no function of the caller's sees the other rows.
--
-- A one-step number whose transaction is over but did not commit shows as
-- 'recyclable': it is neither a gap nor a void, and the next caller of its
-- series and period gets it.
--
CREATE OR REPLACE VIEW invoice_seq.series WITH (security_barrier) AS
SELECT s.name AS series, s.start_at, s.reset, s.format, s.stale_after,
       s.time_zone, s.created_at, s.created_by, s.chronological, s.owner
FROM invoice_seq.series_def s
WHERE pg_catalog.pg_has_role(s.owner::pg_catalog.oid, 'MEMBER');

CREATE OR REPLACE VIEW invoice_seq.ledger WITH (security_barrier) AS
SELECT s.name AS series, e.period, e.invoice_no, e.display_no,
       CASE WHEN e.status OPERATOR(pg_catalog.=) 'reserved'
                 AND e.holder_xid IS NOT NULL
                 AND pg_catalog.pg_xact_status(e.holder_xid)
                     IS DISTINCT FROM 'in progress'
            THEN 'recyclable' ELSE e.status END AS status,
       e.idempotency_key, e.external_ref, e.void_reason,
       e.reserved_at, e.reserved_by, e.confirmed_at, e.confirmed_by,
       e.voided_at, e.voided_by,
       e.holder_xid IS NOT NULL AS one_step
FROM invoice_seq.ledger_entry e
JOIN invoice_seq.series_def s ON s.id OPERATOR(pg_catalog.=) e.series_id
WHERE pg_catalog.pg_has_role(s.owner::pg_catalog.oid, 'MEMBER');

--
-- The sequencer's counters since the server started (or stats_reset()),
-- as pg_stat_statements shows its own: aggregates only, no tenant's data.
--
CREATE FUNCTION invoice_seq.stats(
    OUT requests           bigint,
    OUT batches            bigint,
    OUT mean_batch_size    double precision,
    OUT max_batch_size     bigint,
    OUT mean_queue_wait_ms double precision,
    OUT p99_queue_wait_ms  double precision,
    OUT sequencer_restarts bigint,
    OUT stats_reset        timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'invoice_seq_stats'
LANGUAGE C VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;

CREATE VIEW invoice_seq.stats AS SELECT * FROM invoice_seq.stats();
GRANT SELECT ON invoice_seq.stats TO PUBLIC;

CREATE FUNCTION invoice_seq.stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION invoice_seq.stats_reset() FROM PUBLIC;
