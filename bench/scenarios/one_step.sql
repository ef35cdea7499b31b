-- 5. invoice_seq one-step: the number is issued with the caller's commit.
INSERT INTO inv_one_step VALUES (invoice_seq.next_invoice_no(:series), 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
