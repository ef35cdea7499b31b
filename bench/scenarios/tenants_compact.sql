-- 15b. invoice_seq compact two-phase, many tenants: as compact, but each
-- invoice is numbered in a random tenant's series (see tenants_one_step).
-- The tenants' series outlive a run, so the idempotency key has the run's
-- number :run in it too.  Against compact, which numbers one series.
\set order :order + 1
\set t random(1, :tenants)
SELECT invoice_seq.reserve_invoice_no(:prefix || :t, 'order-' || :run || '-' || :client_id || '-' || :order) AS no \gset
INSERT INTO inv_tenants VALUES (:prefix || :t, invoice_seq.confirm_invoice_no(:prefix || :t, :no, 'ext-' || :no), 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
