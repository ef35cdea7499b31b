-- 3. max() + 1: fast, and wrong under concurrency (duplicates are counted).
INSERT INTO inv_max_plus_one
SELECT coalesce(max(no), 0) + 1, 'customer-' || :client_id, 100.50, now(), repeat('x', 150)
FROM inv_max_plus_one;
