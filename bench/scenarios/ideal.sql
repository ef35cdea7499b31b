-- 7. The ideal: the nextval insert plus a ~100-byte row under a 3-column
-- primary key, in the same statement: the least any per-number ledger row
-- can cost.  A baseline (only its duplicates are checked).
WITH n AS (SELECT nextval('inv_seq') AS no),
     l AS (INSERT INTO ideal_ledger
           SELECT 1, '', no, 'INV-' || lpad(no::text, 8, '0'), 'issued', 'ext-' || no,
                  now(), current_user FROM n)
INSERT INTO inv_ideal
SELECT no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150) FROM n;
