-- 6a. nextval with a 20 ms integrator call between numbering and insert.
SELECT nextval('inv_seq') AS no \gset
SELECT pg_sleep(0.02);
INSERT INTO inv_nextval VALUES (:no, 'customer-' || :client_id, 100.50, now(), repeat('x', 150));
