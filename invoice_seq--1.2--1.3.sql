/*
 * invoice_seq--1.2--1.3.sql: every database of the cluster numbers.
 *
 * Each database gets a sequencer of its own, started when a reservation
 * inside a transaction block needs it.  invoice_seq.database is gone: a
 * server whose postgresql.conf still sets it starts, and warns that the
 * setting is ignored.  stats shows one row per database.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION invoice_seq UPDATE TO '1.3'" to load this file. \quit

DROP VIEW invoice_seq.stats;
DROP FUNCTION invoice_seq.stats();

--
-- Each database's sequencer counters since the server started (or
-- stats_reset()): aggregates only, as pg_stat_database shows them.
--
CREATE FUNCTION invoice_seq.stats(
    OUT database           text,
    OUT sequencer_pid      integer,
    OUT requests           bigint,
    OUT batches            bigint,
    OUT mean_batch_size    double precision,
    OUT max_batch_size     bigint,
    OUT mean_queue_wait_ms double precision,
    OUT p99_queue_wait_ms  double precision,
    OUT sequencer_starts   bigint,
    OUT sequencer_restarts bigint,
    OUT stats_reset        timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'invoice_seq_stats'
LANGUAGE C VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;

CREATE VIEW invoice_seq.stats AS SELECT * FROM invoice_seq.stats();
GRANT SELECT ON invoice_seq.stats TO PUBLIC;

--
-- Start this database's sequencer now rather than at the first
-- reservation inside a transaction block; returns its pid.
--
CREATE FUNCTION invoice_seq.start_sequencer()
RETURNS integer
AS 'MODULE_PATHNAME', 'invoice_seq_start_sequencer'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION invoice_seq.start_sequencer() FROM PUBLIC;
