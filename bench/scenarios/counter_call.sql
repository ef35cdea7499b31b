-- 6b. Counter row with the 20 ms integrator call inside the transaction,
-- as those systems make it.
BEGIN;
UPDATE counters SET n = n + 1 WHERE name = 'inv' RETURNING n AS no \gset
SELECT pg_sleep(0.02);
INSERT INTO inv_counter VALUES (:no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
COMMIT;
