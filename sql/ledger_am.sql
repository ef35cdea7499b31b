--
-- The invoice_ledger table access method: the ledger's rows are never
-- deleted or rewritten, by anyone, and user tables can use it too.  Every
-- refusal is 42501, names the table and the operation, and changes nothing.
--
SELECT amname FROM pg_am a JOIN pg_class c ON c.relam = a.oid
WHERE c.oid = 'invoice_seq.ledger_entry'::regclass;

SELECT invoice_seq.create_series('AM');
SELECT invoice_seq.reserve_invoice_no('AM');             -- 1: reserved
SELECT invoice_seq.reserve_invoice_no('AM');             -- 2: issued below
SELECT invoice_seq.confirm_invoice_no('AM', 2, 'ext-2');
SELECT invoice_seq.reserve_invoice_no('AM');             -- 3: voided below
SELECT invoice_seq.void_invoice_no('AM', 3, 'rejected');
CREATE TABLE ledger_before AS SELECT * FROM invoice_seq.ledger_entry;

-- A fingerprint of the whole ledger, to show that nothing changed.
CREATE FUNCTION ledger_unchanged() RETURNS boolean LANGUAGE sql AS $$
    SELECT NOT EXISTS (SELECT * FROM invoice_seq.ledger_entry
                       EXCEPT SELECT * FROM ledger_before)
       AND NOT EXISTS (SELECT * FROM ledger_before
                       EXCEPT SELECT * FROM invoice_seq.ledger_entry)
$$;

-- As superuser: DELETE, UPDATE (also one that mimics a legal transition,
-- and one of a voided or issued entry), TRUNCATE, SET ACCESS METHOD.
SELECT expect_error($$DELETE FROM invoice_seq.ledger_entry$$);
SELECT expect_error($$DELETE FROM invoice_seq.ledger_entry WHERE invoice_no = 1$$);
SELECT expect_error($$UPDATE invoice_seq.ledger_entry
    SET status = 'issued', confirmed_at = now(), confirmed_by = 'me'
    WHERE invoice_no = 1 AND series_id = (SELECT id FROM invoice_seq.series_def WHERE name = 'AM')$$);
SELECT expect_error($$UPDATE invoice_seq.ledger_entry SET external_ref = 'forged' WHERE status = 'issued'$$);
SELECT expect_error($$UPDATE invoice_seq.ledger_entry SET invoice_no = invoice_no + 1000$$);
SELECT expect_error($$TRUNCATE invoice_seq.ledger_entry$$);
SELECT expect_error($$TRUNCATE invoice_seq.ledger_entry, invoice_seq.series_def CASCADE$$);
SELECT expect_error($$ALTER TABLE invoice_seq.ledger_entry SET ACCESS METHOD heap$$);
SELECT ledger_unchanged();

-- With the ledger's triggers disabled, and in replica mode, the same.
ALTER TABLE invoice_seq.ledger_entry DISABLE TRIGGER ALL;
SELECT expect_error($$DELETE FROM invoice_seq.ledger_entry$$);
SELECT expect_error($$UPDATE invoice_seq.ledger_entry SET void_reason = 'x' WHERE status = 'voided'$$);
SELECT expect_error($$TRUNCATE invoice_seq.ledger_entry$$);
ALTER TABLE invoice_seq.ledger_entry ENABLE TRIGGER ALL;
SET session_replication_role = replica;
SELECT expect_error($$DELETE FROM invoice_seq.ledger_entry$$);
SELECT expect_error($$UPDATE invoice_seq.ledger_entry SET void_reason = 'x' WHERE status = 'voided'$$);
SELECT expect_error($$TRUNCATE invoice_seq.ledger_entry$$);
RESET session_replication_role;
SELECT ledger_unchanged();

-- The extension's own transitions still work.
SELECT invoice_seq.confirm_invoice_no('AM', 1);
SELECT invoice_no, status FROM invoice_seq.ledger WHERE series = 'AM' ORDER BY 1;

-- DROP EXTENSION is refused while the ledger holds numbers, unless the DBA
-- names a complete archive of the record (sql/guards.sql).
SELECT expect_error($$DROP EXTENSION invoice_seq$$);
SELECT expect_error($$DROP EXTENSION invoice_seq CASCADE$$);
-- nor by any other command that would drop it
SELECT expect_error($$DROP SCHEMA invoice_seq CASCADE$$);
SELECT expect_error($$ALTER EXTENSION invoice_seq DROP TABLE invoice_seq.ledger_entry$$);
SELECT expect_error($$DROP TABLE invoice_seq.ledger_entry CASCADE$$);
SELECT expect_error($$DROP ACCESS METHOD invoice_ledger CASCADE$$);
CREATE TABLE too_small AS SELECT * FROM invoice_seq.ledger LIMIT 1;
SET invoice_seq.ledger_archive = 'too_small';
SELECT expect_error($$DROP EXTENSION invoice_seq$$);
SET invoice_seq.ledger_archive = 'no_such_table';
SELECT expect_error($$DROP EXTENSION invoice_seq$$);
RESET invoice_seq.ledger_archive;
DROP TABLE too_small;
-- only superusers may name an archive
SET ROLE regress_invoice_app;
SELECT expect_error($$SET invoice_seq.ledger_archive = 'x'$$);
RESET ROLE;

-- A user table USING invoice_ledger is insert-only.
CREATE TABLE my_issued_invoices (
    no       bigint PRIMARY KEY,
    customer text NOT NULL UNIQUE,
    body     text
) USING invoice_ledger;
INSERT INTO my_issued_invoices
SELECT n, 'customer-' || n, repeat(md5(n::text), 400)    -- 12.8 kB: TOASTed
FROM generate_series(1, 100) n;
COPY my_issued_invoices FROM stdin;
101	customer-101	copied
102	customer-102	copied
\.
SELECT expect_error($$INSERT INTO my_issued_invoices VALUES (1, 'dup', '')$$);
SELECT expect_error($$UPDATE my_issued_invoices SET body = 'x' WHERE no = 1$$);
SELECT expect_error($$DELETE FROM my_issued_invoices WHERE no = 1$$);
SELECT expect_error($$TRUNCATE my_issued_invoices$$);
SELECT expect_error($$ALTER TABLE my_issued_invoices SET ACCESS METHOD heap$$);
SELECT expect_error($$INSERT INTO my_issued_invoices VALUES (1, 'customer-1', 'x')
                      ON CONFLICT (no) DO UPDATE SET body = 'y'$$);
BEGIN;
CREATE TABLE created_here (a int) USING invoice_ledger;
INSERT INTO created_here VALUES (1);
SELECT expect_error($$TRUNCATE created_here$$);
ROLLBACK;
-- what keeps working: indexes (also concurrently), TOAST, vacuum, rewrites
CREATE INDEX my_issued_invoices_len ON my_issued_invoices (length(body));
CREATE INDEX CONCURRENTLY my_issued_invoices_cust ON my_issued_invoices (customer, no);
SELECT reltoastrelid <> 0 AS has_toast,
       (SELECT amname FROM pg_am WHERE oid = (SELECT relam FROM pg_class
            WHERE oid = c.reltoastrelid)) AS toast_am
FROM pg_class c WHERE oid = 'my_issued_invoices'::regclass;
VACUUM my_issued_invoices;
VACUUM FULL my_issued_invoices;
CLUSTER my_issued_invoices USING my_issued_invoices_pkey;
ANALYZE my_issued_invoices;
ALTER TABLE my_issued_invoices SET ACCESS METHOD invoice_ledger;
SELECT count(*), sum(length(body)), count(DISTINCT md5(body)) FROM my_issued_invoices;
SELECT amname FROM pg_am a JOIN pg_class c ON c.relam = a.oid
WHERE c.oid = 'my_issued_invoices'::regclass;
SET enable_seqscan = off;
SELECT no, customer FROM my_issued_invoices WHERE customer = 'customer-42';
RESET enable_seqscan;
-- a CASCADE that would drop this table is refused, even with an archive
CREATE TABLE archive AS SELECT * FROM invoice_seq.archive_record();
SET invoice_seq.ledger_archive = 'archive';
SELECT expect_error($$DROP EXTENSION invoice_seq CASCADE$$);
SELECT expect_error($$DROP SCHEMA invoice_seq CASCADE$$);
SELECT expect_error($$DROP ACCESS METHOD invoice_ledger CASCADE$$);
RESET invoice_seq.ledger_archive;
DROP TABLE archive;
-- the table itself may be dropped by its owner: dropping is not editing
DROP TABLE my_issued_invoices;
DROP TABLE ledger_before;
DROP FUNCTION ledger_unchanged();
