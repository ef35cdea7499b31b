-- 15a. invoice_seq one-step, many tenants: as one_step, but each
-- transaction numbers a random tenant's series, of :tenants that bench/run
-- created with their history (named :prefix || 1 .. :tenants).  Against
-- one_step, which numbers one series.
\set t random(1, :tenants)
INSERT INTO inv_tenants VALUES (:prefix || :t, invoice_seq.next_invoice_no(:prefix || :t), 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
