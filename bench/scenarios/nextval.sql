-- 1. nextval, autocommit: the gappy baseline, the practical limit.
INSERT INTO inv_nextval VALUES (nextval('inv_seq'), 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
