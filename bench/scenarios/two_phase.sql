-- 4. invoice_seq two-phase: reserve (committed at once), then insert and
-- confirm in one transaction.
SELECT invoice_seq.reserve_invoice_no(:series) AS no \gset
BEGIN;
INSERT INTO inv_two_phase VALUES (:no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
SELECT invoice_seq.confirm_invoice_no(:series, :no);
COMMIT;
