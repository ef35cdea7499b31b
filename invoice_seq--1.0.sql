/* invoice_seq--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION invoice_seq" to load this file. \quit

--
-- Storage.  Only the extension's functions write these tables; callers read
-- them through the views below.
--
CREATE TABLE invoice_seq.series_def (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text COLLATE "C" NOT NULL UNIQUE,
    start_at    bigint NOT NULL CHECK (start_at >= 1),
    reset       text NOT NULL CHECK (reset IN ('never', 'yearly', 'monthly')),
    format      text NOT NULL,
    stale_after interval NOT NULL,
    time_zone   text NOT NULL,
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL
);

-- One row per number handed out.  Rows are inserted by the sequencer and
-- updated once, by confirm or void; room is left on each page so that the
-- update can stay on the page (HOT).
CREATE TABLE invoice_seq.ledger_entry (
    series_id       integer NOT NULL,
    period          text COLLATE "C" NOT NULL,
    invoice_no      bigint NOT NULL CHECK (invoice_no >= 1),
    display_no      text NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('reserved', 'issued', 'voided')),
    idempotency_key text COLLATE "C",
    external_ref    text,
    void_reason     text,
    reserved_at     timestamptz NOT NULL,
    reserved_by     text NOT NULL,
    confirmed_at    timestamptz,
    confirmed_by    text,
    voided_at       timestamptz,
    voided_by       text,
    PRIMARY KEY (series_id, period, invoice_no),
    CHECK ((status = 'issued') = (confirmed_at IS NOT NULL)),
    CHECK ((status = 'voided') = (voided_at IS NOT NULL AND void_reason IS NOT NULL))
) WITH (fillfactor = 80);

-- An idempotency key is unique within its series, across periods.
CREATE UNIQUE INDEX ledger_entry_idempotency_key
    ON invoice_seq.ledger_entry (series_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

SELECT pg_catalog.pg_extension_config_dump('invoice_seq.series_def', '');
SELECT pg_catalog.pg_extension_config_dump('invoice_seq.series_def_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('invoice_seq.ledger_entry', '');

REVOKE ALL ON invoice_seq.series_def, invoice_seq.ledger_entry FROM PUBLIC;
GRANT USAGE ON SCHEMA invoice_seq TO PUBLIC;

--
-- Series, managed by DBAs.  Not executable by PUBLIC: GRANT EXECUTE to the
-- roles that may manage series.
--
CREATE FUNCTION invoice_seq.create_series(
    series      text,
    start_at    bigint DEFAULT 1,
    reset       text DEFAULT 'never',
    format      text DEFAULT '{n}',
    stale_after interval DEFAULT '15 minutes',
    time_zone   text DEFAULT 'UTC')
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_create_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.alter_series(
    series      text,
    format      text DEFAULT NULL,
    stale_after interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_alter_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.drop_series(series text)
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_drop_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION invoice_seq.create_series(text, bigint, text, text, interval, text),
                       invoice_seq.alter_series(text, text, interval),
                       invoice_seq.drop_series(text)
    FROM PUBLIC;

--
-- Numbering, used by applications.
--
CREATE FUNCTION invoice_seq.reserve_invoice_no(
    series          text,
    idempotency_key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'invoice_seq_reserve_invoice_no'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.reserve_invoice(
    series          text,
    idempotency_key text DEFAULT NULL,
    OUT series      text,
    OUT period      text,
    OUT invoice_no  bigint,
    OUT display_no  text,
    OUT status      text,
    OUT reserved_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'invoice_seq_reserve_invoice'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.confirm_invoice_no(
    series       text,
    invoice_no   bigint,
    external_ref text DEFAULT NULL,
    period       text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_confirm_invoice_no'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION invoice_seq.void_invoice_no(
    series     text,
    invoice_no bigint,
    reason     text,
    period     text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'invoice_seq_void_invoice_no'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

--
-- Audit.
--
CREATE VIEW invoice_seq.series AS
SELECT s.name AS series, s.start_at, s.reset, s.format, s.stale_after,
       s.time_zone, s.created_at, s.created_by
FROM invoice_seq.series_def s;

CREATE VIEW invoice_seq.ledger AS
SELECT s.name AS series, e.period, e.invoice_no, e.display_no, e.status,
       e.idempotency_key, e.external_ref, e.void_reason,
       e.reserved_at, e.reserved_by, e.confirmed_at, e.confirmed_by,
       e.voided_at, e.voided_by
FROM invoice_seq.ledger_entry e
JOIN invoice_seq.series_def s ON s.id = e.series_id;

GRANT SELECT ON invoice_seq.series, invoice_seq.ledger TO PUBLIC;

CREATE FUNCTION invoice_seq.check_series(
    series          text DEFAULT NULL,
    OUT series      text,
    OUT period      text,
    OUT invoice_no  bigint,
    OUT problem     text,
    OUT detail      text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'invoice_seq_check_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
