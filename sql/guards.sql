--
-- The tables of the legal record (every invoice_ledger table of schema
-- invoice_seq) refuse, to a superuser, the DDL that would remove, rename,
-- move or rewrite them: each refusal is 42501, and afterwards the record,
-- chain heads included, is exactly what it was.  DROP EXTENSION needs an
-- archive that equals archive_record() by content.  Runs last: it ends by
-- dropping the extension.
--
SET invoice_seq.test_clock = '2026-03-10 09:00+00';
SELECT invoice_seq.create_series('GD', reset => 'monthly', format => 'G{YYYY}{MM}-{n}');
SELECT invoice_seq.next_invoice_no('GD') FROM generate_series(1, 3);
SELECT invoice_seq.reserve_invoice_no('GD', 'gd-4');
SELECT invoice_seq.void_invoice_no('GD', 4, 'rejected', '2026-03');
SELECT last_no FROM invoice_seq.close_period('GD', '2026-03', 'month end');
RESET invoice_seq.test_clock;
SELECT invoice_no, link IS NOT NULL AS linked FROM invoice_seq.chain_head('GD', '2026-03');

-- which tables are the record
SELECT c.relname FROM pg_class c JOIN pg_am a ON a.oid = c.relam
WHERE a.amname = 'invoice_ledger' AND c.relnamespace = 'invoice_seq'::regnamespace
ORDER BY 1;
SELECT kind, count(*) > 0 AS present FROM invoice_seq.archive_record() GROUP BY 1 ORDER BY 1;

CREATE TABLE record_before AS SELECT * FROM invoice_seq.archive_record();
CREATE FUNCTION record_unchanged() RETURNS boolean LANGUAGE sql AS $$
    SELECT NOT EXISTS (SELECT * FROM invoice_seq.archive_record()
                       EXCEPT ALL SELECT * FROM record_before)
       AND NOT EXISTS (SELECT * FROM record_before
                       EXCEPT ALL SELECT * FROM invoice_seq.archive_record())
$$;

-- Each refusal, on each table of the record.
CREATE FUNCTION refusals(t text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    q text := 'invoice_seq.' || quote_ident(t);
    stmt text;
BEGIN
    FOREACH stmt IN ARRAY ARRAY[
        'ALTER EXTENSION invoice_seq DROP TABLE ' || q,
        'DROP TABLE ' || q,
        'DROP TABLE ' || q || ' CASCADE',
        'TRUNCATE ' || q,
        'TRUNCATE ' || q || ' CASCADE',
        'DELETE FROM ' || q,
        'UPDATE ' || q || ' SET period = period',
        'ALTER TABLE ' || q || ' RENAME TO forged',
        'ALTER TABLE ' || q || ' RENAME COLUMN period TO forged',
        'ALTER TABLE ' || q || ' SET SCHEMA public',
        'ALTER TABLE ' || q || ' SET ACCESS METHOD heap',
        'ALTER TABLE ' || q || ' SET UNLOGGED',
        'ALTER TABLE ' || q || ' ALTER COLUMN period TYPE text USING ''forged''',
        'ALTER TABLE ' || q || ' DROP COLUMN period',
        'ALTER TABLE ' || q || ' ADD COLUMN forged int DEFAULT 1',
        'ALTER TABLE ' || q || ' DROP CONSTRAINT ' || quote_ident(t || '_pkey'),
        'DROP INDEX invoice_seq.' || quote_ident(t || '_pkey'),
        'DROP INDEX invoice_seq.' || quote_ident(t || '_pkey') || ' CASCADE',
        'CREATE RULE forged AS ON INSERT TO ' || q || ' DO INSTEAD NOTHING',
        'CREATE TRIGGER forged BEFORE INSERT ON ' || q
            || ' FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()',
        'CREATE POLICY forged ON ' || q || ' USING (false)',
        'ALTER TABLE ' || q || ' ENABLE ROW LEVEL SECURITY',
        'ALTER TABLE ' || q || ' FORCE ROW LEVEL SECURITY',
        'CREATE TABLE forged () INHERITS (' || q || ')']
    LOOP
        RETURN NEXT rpad(left(replace(stmt, q, 'T'), 55), 56) || left(expect_error(stmt), 60);
    END LOOP;
END
$$;
SELECT refusals('ledger_entry');
SELECT refusals('ledger_link');
SELECT refusals('period_close');
SELECT record_unchanged();

-- and the schema, and the access method
SELECT expect_error($$ALTER SCHEMA invoice_seq RENAME TO forged$$);
SELECT expect_error($$ALTER EXTENSION invoice_seq DROP ACCESS METHOD invoice_ledger$$);
-- nor may another table inherit from one, so that its rows read as the record's
CREATE TABLE forged_child (LIKE invoice_seq.ledger_link);
SELECT expect_error($$ALTER TABLE forged_child INHERIT invoice_seq.ledger_link$$);
DROP TABLE forged_child;
SELECT expect_error($$DROP ACCESS METHOD invoice_ledger$$) LIKE '2BP01%' AS refused_by_postgres;
-- what does not change rows or columns still works
ALTER TABLE invoice_seq.ledger_link ALTER COLUMN period SET STATISTICS 200;
ALTER TABLE invoice_seq.ledger_link ALTER COLUMN period SET STATISTICS -1;
ALTER TABLE invoice_seq.period_close SET (fillfactor = 90);
ALTER TABLE invoice_seq.period_close RESET (fillfactor);
ALTER INDEX invoice_seq.ledger_link_pkey RENAME TO ledger_link_pkey2;
ALTER INDEX invoice_seq.ledger_link_pkey2 RENAME TO ledger_link_pkey;
-- a DROP OWNED that would drop the record is refused too
CREATE ROLE regress_guard_owner;
ALTER TABLE invoice_seq.ledger_link OWNER TO regress_guard_owner;
SELECT expect_error($$DROP OWNED BY regress_guard_owner$$) LIKE '2BP01%' AS refused_by_postgres;
-- and by the extension, for a table no longer a member (catalog surgery)
BEGIN;
DELETE FROM pg_depend WHERE objid = 'invoice_seq.ledger_link'::regclass AND deptype = 'e';
SET LOCAL client_min_messages = warning;
-- (which table of the record it reaches first varies between versions)
SELECT left(expect_error($$DROP OWNED BY regress_guard_owner CASCADE$$), 25) AS refused;
SELECT expect_error($$DROP TABLE invoice_seq.ledger_link$$);
ROLLBACK;
ALTER TABLE invoice_seq.ledger_link OWNER TO CURRENT_USER;
DROP ROLE regress_guard_owner;
-- Holes a hostile review found: a partition parent over the ledger (its
-- TRUNCATE, after a SET TABLESPACE, in a savepoint), the access method's
-- handler replaced, objects taken out of the extension, the series
-- truncated.
CREATE TABLE hide (LIKE invoice_seq.ledger_entry) PARTITION BY LIST (series_id);
SELECT expect_error($$ALTER TABLE hide ATTACH PARTITION invoice_seq.ledger_entry DEFAULT$$);
DROP TABLE hide;
CREATE TABLE parent_of_user (a int);
CREATE TABLE user_ledger () INHERITS (parent_of_user) USING invoice_ledger;
INSERT INTO user_ledger VALUES (1);
SELECT expect_error($$TRUNCATE parent_of_user$$);
DROP TABLE user_ledger, parent_of_user;
SELECT expect_error($$CREATE OR REPLACE FUNCTION invoice_seq.invoice_ledger_handler(internal)
    RETURNS table_am_handler LANGUAGE internal AS 'heap_tableam_handler'$$);
SELECT expect_error($$ALTER FUNCTION invoice_seq.invoice_ledger_handler(internal) RENAME TO forged$$);
SELECT expect_error($$ALTER FUNCTION invoice_seq.invoice_ledger_handler(internal) SET SCHEMA public$$);
SELECT expect_error($$ALTER FUNCTION invoice_seq.next_invoice_no(text) SECURITY INVOKER$$);
SELECT expect_error($$ALTER EXTENSION invoice_seq DROP FUNCTION invoice_seq.invoice_ledger_handler(internal)$$);
SELECT expect_error($$TRUNCATE invoice_seq.series_def CASCADE$$);
-- maintenance still works: VACUUM FULL and CLUSTER rewrite into a table of
-- their own, and an index a DBA added may be dropped (not a unique one of
-- the extension's)
VACUUM FULL invoice_seq.ledger_link;
CLUSTER invoice_seq.period_close USING period_close_pkey;
CREATE INDEX dba_index ON invoice_seq.ledger_entry (reserved_at);
DROP INDEX invoice_seq.dba_index;
SELECT expect_error($$DROP INDEX invoice_seq.ledger_entry_idempotency_key$$);
SELECT record_unchanged();

-- (every refusal above ran inside a function); after a rolled-back
-- savepoint, the same
BEGIN;
SAVEPOINT s;
ALTER EXTENSION invoice_seq DROP TABLE invoice_seq.ledger_link;
ROLLBACK TO SAVEPOINT s;
SELECT expect_error($$DROP TABLE invoice_seq.ledger_link$$);
COMMIT;
SELECT record_unchanged();
SELECT count(*) = 5 AS still_members FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'invoice_seq')
  AND d.deptype = 'e' AND c.relname IN ('ledger_entry', 'ledger_link', 'period_close', 'series_def', 'ledger');

-- The archive: DROP EXTENSION is refused without one, and with one that
-- is not the whole record, by content; the detail says why.
CREATE FUNCTION drop_refusal() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
    detail text;
BEGIN
    DROP EXTENSION invoice_seq;
    RETURN 'dropped';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, detail = PG_EXCEPTION_DETAIL;
    RETURN state || ': ' || detail;
END
$$;
SELECT expect_error($$DROP EXTENSION invoice_seq$$);
SELECT drop_refusal();
CREATE TABLE record_archive AS SELECT * FROM invoice_seq.archive_record();
SET invoice_seq.ledger_archive = 'no_such_table';
SELECT drop_refusal();
SET invoice_seq.ledger_archive = 'record_before_view';
CREATE VIEW record_before_view AS SELECT * FROM invoice_seq.archive_record();
SELECT drop_refusal();
CREATE TEMP TABLE temp_archive AS SELECT * FROM invoice_seq.archive_record();
SET invoice_seq.ledger_archive = 'temp_archive';
SELECT drop_refusal();
CREATE TABLE counts_only AS SELECT kind, series, period, invoice_no FROM invoice_seq.archive_record();
SET invoice_seq.ledger_archive = 'counts_only';
SELECT drop_refusal();
-- an archive with its rows in a temporary child table: refused
CREATE TABLE parent_archive AS SELECT * FROM invoice_seq.archive_record() LIMIT 0;
CREATE TEMP TABLE child_archive () INHERITS (parent_archive);
INSERT INTO child_archive SELECT * FROM invoice_seq.archive_record();
SET invoice_seq.ledger_archive = 'parent_archive';
SELECT drop_refusal();
DROP TABLE child_archive, parent_archive;
SET invoice_seq.ledger_archive = 'record_archive';
-- the same number of rows, one of them rewritten: refused
BEGIN;
UPDATE record_archive SET item = jsonb_set(item, '{external_ref}', '"forged"')
WHERE kind = 'entry' AND series = 'GD' AND invoice_no = 1;
SELECT drop_refusal();
ROLLBACK;
-- a row missing: refused
BEGIN;
DELETE FROM record_archive WHERE kind = 'closing' AND series = 'GD';
SELECT drop_refusal();
ROLLBACK;
-- made in another time zone and output settings: the same record
SET TimeZone = 'Asia/Kolkata';
SET bytea_output = 'escape';
SET IntervalStyle = 'iso_8601';
SELECT count(*) AS differences FROM (
    (SELECT * FROM invoice_seq.archive_record() EXCEPT ALL SELECT * FROM record_archive)
    UNION ALL
    (SELECT * FROM record_archive EXCEPT ALL SELECT * FROM invoice_seq.archive_record())) d;
-- the settings of the caller are back afterwards
SHOW TimeZone;
SHOW bytea_output;
RESET TimeZone;
RESET bytea_output;
RESET IntervalStyle;
-- archive_record() sealed every chain: each final entry has its link,
-- but those above a number still reserved (a chain runs in number order)
SELECT count(*) AS unlinked FROM record_archive e
WHERE e.kind = 'entry' AND e.item->>'status' <> 'reserved'
  AND NOT EXISTS (SELECT FROM record_archive l WHERE l.kind = 'link'
                  AND l.series = e.series AND l.period = e.period AND l.invoice_no = e.invoice_no)
  AND NOT EXISTS (SELECT FROM record_archive r WHERE r.kind = 'entry'
                  AND r.item->>'status' = 'reserved' AND r.series = e.series
                  AND r.period = e.period AND r.invoice_no < e.invoice_no);
-- and a head per chain, the link of its highest linked number
SELECT count(*) AS heads_not_last FROM record_archive h
WHERE h.kind = 'head' AND EXISTS (SELECT FROM record_archive l WHERE l.kind = 'link'
    AND l.series = h.series AND l.period = h.period AND l.invoice_no > h.invoice_no);
-- only superusers run archive_record()
SET ROLE regress_invoice_app;
SELECT expect_error($$SELECT count(*) FROM invoice_seq.archive_record()$$) LIKE '42501%' AS refused;
RESET ROLE;
-- with the whole record archived, DROP EXTENSION goes through; the
-- archive cannot be dropped in the same transaction
DROP VIEW record_before_view;
BEGIN;
DROP EXTENSION invoice_seq CASCADE;
SELECT expect_error($$DROP TABLE record_archive$$);
COMMIT;
SELECT count(*) FROM pg_extension WHERE extname = 'invoice_seq';
SELECT count(*) AS archived_entries FROM record_archive WHERE kind = 'entry';
RESET invoice_seq.ledger_archive;
