--
-- Attacks by an ordinary user, each shown harmless.  The attacker is a
-- tenant with a series of its own; another tenant's series and the ledger
-- must come out untouched, and the attacker's own numbers must be right.
--
CREATE ROLE regress_attacker;
CREATE ROLE regress_victim NOLOGIN;
GRANT EXECUTE ON FUNCTION expect_error(text) TO regress_attacker;
SELECT invoice_seq.create_series('ATT', owner => 'regress_attacker');
SELECT invoice_seq.create_series('VIC', owner => 'regress_victim');
SELECT invoice_seq.reserve_invoice_no('VIC', 'victim-1');
CREATE TABLE ledger_before AS SELECT * FROM invoice_seq.ledger_entry;
CREATE TABLE series_before AS SELECT * FROM invoice_seq.series_def;
CREATE SCHEMA evil AUTHORIZATION regress_attacker;

SET ROLE regress_attacker;

-- 1. Shadowing: functions and operators named like the ones the
-- extension's SQL uses, in a schema first on the search path.  Each one,
-- if ever called, records it.
CREATE TABLE evil.calls (what text);
CREATE FUNCTION evil.note(what text) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO evil.calls VALUES (what) $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT evil.note('now'); SELECT '2000-01-01'::timestamptz $$;
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql
    AS $$ SELECT evil.note('lower'); SELECT 'x' $$;
CREATE FUNCTION evil.count(anyelement) RETURNS bigint LANGUAGE sql
    AS $$ SELECT evil.note('count'); SELECT 0::bigint $$;
CREATE FUNCTION evil.pg_has_role(oid, text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT evil.note('pg_has_role'); SELECT true $$;
CREATE FUNCTION evil.pg_xact_status(xid8) RETURNS text LANGUAGE sql
    AS $$ SELECT evil.note('pg_xact_status'); SELECT 'committed' $$;
CREATE FUNCTION evil.texteq_always(text, text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT evil.note('='); SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq_always);
CREATE FUNCTION evil.int4eq_always(int, int) RETURNS boolean LANGUAGE sql
    AS $$ SELECT evil.note('int ='); SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = evil.int4eq_always);
CREATE FUNCTION evil.int8gt_always(bigint, bigint) RETURNS boolean LANGUAGE sql
    AS $$ SELECT evil.note('>'); SELECT true $$;
CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8gt_always);
SET search_path = evil, pg_catalog, public;

-- Every API function, on the attacker's own series.
SELECT invoice_seq.reserve_invoice_no('ATT', 'att-1');
SELECT series, invoice_no, display_no, status FROM invoice_seq.reserve_invoice('ATT', 'att-2');
SELECT invoice_seq.confirm_invoice_no('ATT', 1, 'ext-1');
SELECT invoice_seq.void_invoice_no('ATT', 2, 'rejected');
BEGIN;
SELECT invoice_seq.next_invoice_no('ATT');
ROLLBACK;
SELECT invoice_seq.next_invoice_no('ATT');
SELECT series, invoice_no, display_no FROM invoice_seq.next_invoice('ATT');
SELECT * FROM invoice_seq.check_series('ATT');
SELECT * FROM invoice_seq.check_series();
SELECT series FROM invoice_seq.series;
SELECT series, invoice_no, status FROM invoice_seq.ledger ORDER BY invoice_no;
-- and against the victim's, still refused
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('VIC')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('VIC', 1)$$);
-- none of the shadowing objects was ever called by the extension
SELECT count(*) AS shadow_calls FROM evil.calls;
RESET search_path;

-- 2. Injection: names, formats, keys, refs and reasons are validated or
-- stored literally; none is ever part of an SQL text.
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('ATT''; DELETE FROM invoice_seq.ledger_entry; --')$$);
SELECT expect_error($$SELECT invoice_seq.next_invoice_no($q$VIC' OR '1'='1$q$)$$);
SELECT expect_error($$SELECT * FROM invoice_seq.check_series($q$ATT' OR true --$q$)$$);
SELECT invoice_seq.reserve_invoice_no('ATT', $k$'); UPDATE invoice_seq.series_def SET owner = 'regress_attacker'; --$k$);
SELECT invoice_seq.confirm_invoice_no('ATT', 5, $r$x'); DROP TABLE invoice_seq.ledger_entry; --$r$);
SELECT invoice_seq.reserve_invoice_no('ATT', 'att-7');
SELECT invoice_seq.void_invoice_no('ATT', 6, $r$'); TRUNCATE invoice_seq.ledger_entry; --$r$);
SELECT invoice_no, idempotency_key, external_ref, void_reason
FROM invoice_seq.ledger WHERE series = 'ATT' AND invoice_no IN (5, 6) ORDER BY 1;

-- 3. Direct writes to the extension's tables.
SELECT expect_error($$INSERT INTO invoice_seq.series_def (name, start_at, reset, format, stale_after, time_zone, created_at, created_by, owner) VALUES ('X', 1, 'never', '{n}', '1 hour', 'UTC', now(), 'x', 'regress_attacker')$$);
SELECT expect_error($$UPDATE invoice_seq.series_def SET owner = 'regress_attacker' WHERE name = 'VIC'$$);
SELECT expect_error($$DELETE FROM invoice_seq.series_def$$);
SELECT expect_error($$INSERT INTO invoice_seq.ledger_entry SELECT * FROM invoice_seq.ledger_entry$$);
SELECT expect_error($$UPDATE invoice_seq.ledger_entry SET status = 'voided'$$);
SELECT expect_error($$DELETE FROM invoice_seq.ledger_entry$$);
SELECT expect_error($$TRUNCATE invoice_seq.ledger_entry$$);
SELECT expect_error($$UPDATE invoice_seq.ledger SET status = 'voided'$$);
SELECT expect_error($$DELETE FROM invoice_seq.ledger$$);

-- 4. Internal functions: the access method's handler is not callable, and
-- the settings that matter are for superusers.
-- (PostgreSQL's own refusal differs between releases, 42846 or 0A000: the
-- test only shows that the call is refused.)
SELECT expect_error($$SELECT invoice_seq.invoice_ledger_handler(NULL::internal)$$)
       IN ('42846: cannot cast type unknown to internal',
           '0A000: cannot accept a value of type internal') AS refused;
SELECT expect_error($$SET invoice_seq.test_clock = '2000-01-01'$$);
SELECT expect_error($$SET invoice_seq.ledger_archive = 'evil.calls'$$);
SELECT left(expect_error($$SET invoice_seq.max_databases = 1$$), 5) AS sqlstate;
SELECT left(expect_error($$SELECT invoice_seq.start_sequencer()$$), 5) AS sqlstate;
SELECT expect_error($$DROP EXTENSION invoice_seq$$);
SELECT expect_error($$SELECT invoice_seq.create_series('MINE')$$);
RESET ROLE;

-- The victim's series and entries, and every series definition, are
-- exactly as before; the attacker's own entries are all there is new.
SELECT NOT EXISTS (SELECT * FROM ledger_before EXCEPT SELECT * FROM invoice_seq.ledger_entry)
   AND NOT EXISTS (SELECT * FROM invoice_seq.series_def EXCEPT SELECT * FROM series_before)
   AS nothing_lost_or_changed;
SELECT s.name, count(*) FROM invoice_seq.ledger_entry e
JOIN invoice_seq.series_def s ON s.id = e.series_id
WHERE NOT EXISTS (SELECT 1 FROM ledger_before b WHERE b.series_id = e.series_id
                  AND b.period = e.period AND b.invoice_no = e.invoice_no)
GROUP BY 1;
SELECT * FROM invoice_seq.check_series('ATT');
DROP TABLE ledger_before, series_before;
DROP SCHEMA evil CASCADE;
