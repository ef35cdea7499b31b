--
-- invoice_seq.stats: the sequencer's counters.  Timings vary; the test
-- checks what must hold, not values.
--
SELECT invoice_seq.stats_reset();
SELECT requests, batches, mean_batch_size, max_batch_size, mean_queue_wait_ms,
       p99_queue_wait_ms, stats_reset > now() - interval '1 minute' AS just_reset
FROM invoice_seq.stats;

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
FROM invoice_seq.stats;

-- A sequencer that is terminated comes back, and the restart is counted.
SELECT sequencer_restarts AS restarts_before FROM invoice_seq.stats \gset
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE backend_type = 'invoice_seq sequencer';
BEGIN;
SELECT invoice_seq.reserve_invoice_no('ST');   -- waits for the new sequencer
COMMIT;
SELECT sequencer_restarts - :restarts_before AS restarts FROM invoice_seq.stats;

-- Anyone may read the counters; only superusers may reset them.
SET ROLE regress_invoice_app;
SELECT requests > 0 AS readable FROM invoice_seq.stats;
-- (the refusal is PostgreSQL's own: only its SQLSTATE is shown)
SELECT left(expect_error($$SELECT invoice_seq.stats_reset()$$), 5) AS sqlstate;
RESET ROLE;
