-- 14b. Seed 000's design with the 20 ms integrator call between its
-- transaction and the update that marks the invoice sent.
BEGIN;
UPDATE counters SET n = n + 1 WHERE name = 'inv' RETURNING n AS no \gset
INSERT INTO inv_seed000 VALUES (:no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150), 'pending');
COMMIT;
SELECT pg_sleep(0.02);
UPDATE inv_seed000 SET status = 'sent' WHERE no = :no;
