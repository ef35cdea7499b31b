-- 14a. Seed 000's design: in one short transaction, a counter row updated
-- and the invoice row written with its number, 'pending'; after the
-- integrator's call, the invoice marked sent.  Gap-free while nothing
-- fails after the number is taken; no ledger apart from the invoice.  A
-- baseline (only its duplicates are checked).
BEGIN;
UPDATE counters SET n = n + 1 WHERE name = 'inv' RETURNING n AS no \gset
INSERT INTO inv_seed000 VALUES (:no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150), 'pending');
COMMIT;
UPDATE inv_seed000 SET status = 'sent' WHERE no = :no;
