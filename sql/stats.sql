--
-- invoice_seq.stats: each database's sequencer counters.  Timings vary;
-- the test checks what must hold, not values.
--
SELECT invoice_seq.stats_reset();
-- this database's sequencer, started ahead of the first request
SELECT invoice_seq.start_sequencer() AS sequencer_pid \gset
SELECT count(*) AS started FROM pg_stat_activity
WHERE pid = :sequencer_pid AND backend_type = 'invoice_seq sequencer'
  AND datname = current_database();
SELECT database = current_database() AS this_database,
       sequencer_pid IS NOT NULL AS running,
       requests, batches, mean_batch_size, max_batch_size, mean_queue_wait_ms,
       p99_queue_wait_ms, stats_reset > now() - interval '1 minute' AS just_reset
FROM invoice_seq.stats WHERE database = current_database();

SELECT invoice_seq.create_series('ST');
-- The sequencer serves reservations made inside a transaction block.
BEGIN;
SELECT count(invoice_seq.reserve_invoice_no('ST')) FROM generate_series(1, 5);
COMMIT;
SELECT count(invoice_seq.next_invoice_no('ST')) FROM generate_series(1, 3);
SELECT requests, batches BETWEEN 1 AND 8 AS batches_ok,
       mean_batch_size >= 1 AS mean_ok, max_batch_size >= 1 AS max_ok,
       mean_queue_wait_ms >= 0 AS wait_ok,
       p99_queue_wait_ms >= mean_queue_wait_ms / 2 AS p99_ok
FROM invoice_seq.stats WHERE database = current_database();

-- A sequencer that is terminated comes back at the next request, and the
-- restart is counted.
SELECT sequencer_starts AS starts_before, sequencer_restarts AS restarts_before
FROM invoice_seq.stats WHERE database = current_database() \gset
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE backend_type = 'invoice_seq sequencer' AND datname = current_database();
BEGIN;
SELECT invoice_seq.reserve_invoice_no('ST');   -- starts a new sequencer
COMMIT;
SELECT sequencer_starts - :starts_before AS starts,
       sequencer_restarts - :restarts_before AS restarts
FROM invoice_seq.stats WHERE database = current_database();

-- Anyone may read the counters; only superusers may reset them.
SET ROLE regress_invoice_app;
SELECT requests > 0 AS readable FROM invoice_seq.stats
WHERE database = current_database();
-- (the refusal is PostgreSQL's own: only its SQLSTATE is shown)
SELECT left(expect_error($$SELECT invoice_seq.stats_reset()$$), 5) AS sqlstate;
RESET ROLE;
