-- 9a. invoice_seq compact two-phase: reserve under a unique key (committed
-- at once), then one autocommit statement that confirms and inserts.
-- :order counts each client's invoices (bench/run sets it to 0).
\set order :order + 1
SELECT invoice_seq.reserve_invoice_no(:series, 'order-' || :client_id || '-' || :order) AS no \gset
INSERT INTO inv_compact VALUES (invoice_seq.confirm_invoice_no(:series, :no, 'ext-' || :no), 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
