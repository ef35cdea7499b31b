-- 8b. The same invoice, numbered by invoice_seq one-step: the number is
-- issued with the caller's commit.
BEGIN;
INSERT INTO inv_invoice_one_step VALUES (invoice_seq.next_invoice_no(:series), 'customer-' || :client_id, 100.50, now(), repeat('x', 150)) RETURNING no \gset
INSERT INTO line_invoice_one_step SELECT :no, i, 'product-' || i, i, 20.10, repeat('y', 50) FROM generate_series(1, 5) i;
COMMIT;
