/*
 * invoice_seq--1.3--1.4.sql: the legal record, a hash chain over the ledger.
 *
 * Every final entry (issued or voided) of a (series, period) gets a link:
 * the SHA-256 of its canonical encoding, which includes the previous link
 * (docs/chain.md).  Links are rows of ledger_link, an invoice_ledger table:
 * inserted once, never changed or deleted.  The application may give the
 * digest of its invoice document to next_invoice_no() and
 * confirm_invoice_no(), and the chain then covers the document too.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invoice_seq UPDATE TO '1.4'" to load this file. \quit

ALTER TABLE invoice_seq.ledger_entry
    ADD COLUMN app_digest bytea
    CHECK (app_digest IS NULL OR pg_catalog.octet_length(app_digest) = 32);
COMMENT ON COLUMN invoice_seq.ledger_entry.app_digest IS
    'the application''s SHA-256 of its invoice document, covered by the chain';

CREATE TABLE invoice_seq.ledger_link (
    series_id   integer NOT NULL,
    period      text COLLATE "C" NOT NULL,
    invoice_no  bigint NOT NULL,
    link        bytea NOT NULL CHECK (pg_catalog.octet_length(link) = 32),
    sealed_at   timestamptz NOT NULL,
    PRIMARY KEY (series_id, period, invoice_no)
) USING invoice_ledger;

SELECT pg_catalog.pg_extension_config_dump('invoice_seq.ledger_link', '');
REVOKE ALL ON invoice_seq.ledger_link FROM PUBLIC;

-- The application's digest: overloads, so that existing calls (and
-- column defaults calling next_invoice_no(series)) are unchanged.
CREATE FUNCTION invoice_seq.next_invoice_no(series text, app_digest bytea)
RETURNS bigint
AS 'MODULE_PATHNAME', 'invoice_seq_next_invoice_no'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.confirm_invoice_no(
    series       text,
    invoice_no   bigint,
    external_ref text,
    period       text,
    app_digest   bytea)
RETURNS bigint
AS 'MODULE_PATHNAME', 'invoice_seq_confirm_invoice_no'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.verify_series(
    series          text,
    period          text DEFAULT NULL,
    OUT series      text,
    OUT period      text,
    OUT invoice_no  bigint,
    OUT problem     text,
    OUT detail      text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'invoice_seq_verify_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.chain_head(
    series          text,
    period          text DEFAULT NULL,
    OUT invoice_no  bigint,
    OUT link        text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'invoice_seq_chain_head'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.export_series(
    series  text,
    period  text DEFAULT NULL,
    format  text DEFAULT 'jsonl')
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'invoice_seq_export_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

--
-- The closing of a (series, period): its counts and final link.  Once
-- closed, a period takes no more numbers.
--
CREATE TABLE invoice_seq.period_close (
    series_id   integer NOT NULL,
    period      text COLLATE "C" NOT NULL,
    closed_at   timestamptz NOT NULL,
    closed_by   text NOT NULL,
    reason      text NOT NULL,
    issued      bigint NOT NULL,
    voided      bigint NOT NULL,
    last_no     bigint,
    final_link  bytea,
    PRIMARY KEY (series_id, period)
) USING invoice_ledger;

SELECT pg_catalog.pg_extension_config_dump('invoice_seq.period_close', '');
REVOKE ALL ON invoice_seq.period_close FROM PUBLIC;

CREATE FUNCTION invoice_seq.close_period(
    series          text,
    period          text,
    reason          text,
    OUT issued      bigint,
    OUT voided      bigint,
    OUT last_no     bigint,
    OUT link        text)
RETURNS record
AS 'MODULE_PATHNAME', 'invoice_seq_close_period'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION invoice_seq.close_period(text, text, text) FROM PUBLIC;

-- Closings as their series' members see them.
CREATE VIEW invoice_seq.closed_periods AS
SELECT s.name AS series, c.period, c.closed_at, c.closed_by, c.reason,
       c.issued, c.voided, c.last_no,
       pg_catalog.encode(c.final_link, 'hex') AS final_link
FROM invoice_seq.period_close c
JOIN invoice_seq.series_def s ON s.id OPERATOR(pg_catalog.=) c.series_id
WHERE pg_catalog.pg_has_role(s.owner::pg_catalog.oid, 'MEMBER');
GRANT SELECT ON invoice_seq.closed_periods TO PUBLIC;

--
-- National presets of create_series (preset.c; README "National presets").
--
ALTER TABLE invoice_seq.series_def
    ADD COLUMN preset text CHECK (preset IN ('tr_efatura', 'pt_atcud', 'fr')),
    ADD COLUMN validation_code text;

CREATE FUNCTION invoice_seq.create_series_preset(
    series          text,
    preset          text,
    validation_code text DEFAULT NULL,
    start_at        bigint DEFAULT 1,
    format          text DEFAULT NULL,
    reset           text DEFAULT NULL,
    stale_after     interval DEFAULT '15 minutes',
    time_zone       text DEFAULT 'UTC',
    owner           regrole DEFAULT pg_catalog.to_regrole(pg_catalog.quote_ident(CURRENT_USER)))
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_create_series_preset'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION invoice_seq.create_series_preset(text, text, text, bigint, text, text, interval, text, regrole)
    FROM PUBLIC;

CREATE OR REPLACE VIEW invoice_seq.series WITH (security_barrier) AS
SELECT s.name AS series, s.start_at, s.reset, s.format, s.stale_after,
       s.time_zone, s.created_at, s.created_by, s.chronological, s.owner,
       s.preset, s.validation_code
FROM invoice_seq.series_def s
WHERE pg_catalog.pg_has_role(s.owner::pg_catalog.oid, 'MEMBER');
