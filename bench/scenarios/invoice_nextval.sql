-- 8a. A realistic invoice, numbered by nextval: a header and 5 lines in one
-- transaction.
BEGIN;
INSERT INTO inv_invoice_nextval VALUES (nextval('inv_seq'), 'customer-' || :client_id, 100.50, now(), repeat('x', 150)) RETURNING no \gset
INSERT INTO line_invoice_nextval SELECT :no, i, 'product-' || i, i, 20.10, repeat('y', 50) FROM generate_series(1, 5) i;
COMMIT;
