-- 2. Counter row locked until commit (django-sequences, Odoo, Frappe).
BEGIN;
UPDATE counters SET n = n + 1 WHERE name = 'inv' RETURNING n AS no \gset
INSERT INTO inv_counter VALUES (:no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
COMMIT;
