-- 13a. The two-phase ideal: what a durable two-phase record costs at
-- least.  The number must be durable before the external call, so two
-- commits are the floor: an autocommit INSERT of a reserved row under a
-- unique key (nextval(), gappy), then one statement that marks it issued
-- and inserts the invoice.  A baseline for compact (only its duplicates
-- are checked).
\set order :order + 1
INSERT INTO ideal_two_phase_ledger
VALUES (1, '', nextval('inv_seq'), 'order-' || :client_id || '-' || :order, 'reserved', NULL, now(), current_user)
RETURNING invoice_no AS no \gset
WITH l AS (UPDATE ideal_two_phase_ledger SET status = 'issued', external_ref = 'ext-' || :no
           WHERE series_id = 1 AND period = '' AND invoice_no = :no RETURNING invoice_no)
INSERT INTO inv_ideal_two_phase
SELECT invoice_no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150) FROM l;
