-- 6c. invoice_seq two-phase with the 20 ms integrator call between reserve
-- and confirm: the just-in-time pattern.
SELECT invoice_seq.reserve_invoice_no(:series) AS no \gset
SELECT pg_sleep(0.02);
BEGIN;
INSERT INTO inv_two_phase VALUES (:no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
SELECT invoice_seq.confirm_invoice_no(:series, :no);
COMMIT;
