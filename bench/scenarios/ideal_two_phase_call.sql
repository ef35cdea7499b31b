-- 13b. The two-phase ideal with the 20 ms integrator call between the two
-- statements: the baseline for compact_call.
\set order :order + 1
INSERT INTO ideal_two_phase_ledger
VALUES (1, '', nextval('inv_seq'), 'order-' || :client_id || '-' || :order, 'reserved', NULL, now(), current_user)
RETURNING invoice_no AS no \gset
SELECT pg_sleep(0.02);
WITH l AS (UPDATE ideal_two_phase_ledger SET status = 'issued', external_ref = 'ext-' || :no
           WHERE series_id = 1 AND period = '' AND invoice_no = :no RETURNING invoice_no)
INSERT INTO inv_ideal_two_phase
SELECT invoice_no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150) FROM l;
