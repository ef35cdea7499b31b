-- 9b. invoice_seq compact two-phase with the 20 ms integrator call between
-- reserve and the confirming insert.
\set order :order + 1
SELECT invoice_seq.reserve_invoice_no(:series, 'order-' || :client_id || '-' || :order) AS no \gset
SELECT pg_sleep(0.02);
INSERT INTO inv_compact VALUES (invoice_seq.confirm_invoice_no(:series, :no, 'ext-' || :no), 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
