/*
 * invoice_seq--1.4--1.5.sql: the archive of the legal record.
 *
 * DROP EXTENSION drops the legal record.  While the ledger holds entries it
 * is refused unless invoice_seq.ledger_archive names a table holding
 * exactly the rows of archive_record(): every series, entry, link and
 * closing, and the head of each chain (src/record_guard.c).
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invoice_seq UPDATE TO '1.5'" to load this file. \quit

CREATE FUNCTION invoice_seq.archive_record(
    OUT kind        text,
    OUT series      text,
    OUT period      text,
    OUT invoice_no  bigint,
    OUT item        jsonb)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'invoice_seq_archive_record'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION invoice_seq.archive_record() IS
    'the whole legal record, one row per series, entry, link, closing and chain head: CREATE TABLE ... AS SELECT * FROM it to archive it';
REVOKE ALL ON FUNCTION invoice_seq.archive_record() FROM PUBLIC;
