--
-- Where a reservation is recorded, by who calls reserve_invoice_no().
--
-- It is recorded in the caller's own transaction only when called by the
-- client's statement itself, outside a transaction block: the number then
-- reaches the client with the statement's result, after the commit.  Called
-- from a function, procedure, trigger or DO block, the number is in that
-- code's hands before anything is committed; the code may show or send it
-- and then roll back.  So it goes to the sequencer, is committed before it
-- is returned, and survives the rollback: a retry with the same key gets
-- the same number, and nobody else ever gets it.
--
\set SHOW_CONTEXT never
SELECT invoice_seq.create_series('CALL');

-- The report of issue 19: a procedure calls a function that reserves,
-- shows the number, and rolls back.
CREATE FUNCTION take_no(k text) RETURNS bigint LANGUAGE plpgsql
AS $$BEGIN RETURN invoice_seq.reserve_invoice_no('CALL', k); END$$;
CREATE PROCEDURE issue(k text) LANGUAGE plpgsql
AS $$DECLARE n bigint; BEGIN n := take_no(k); RAISE NOTICE 'sent number %', n; ROLLBACK; END$$;
CALL issue('order-1');
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-2');   -- not 1
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-1');   -- 1 again

-- The procedure calling reserve directly, and committing or failing.
CREATE PROCEDURE issue_direct(k text, fail boolean) LANGUAGE plpgsql
AS $$
DECLARE n bigint;
BEGIN
    n := invoice_seq.reserve_invoice_no('CALL', k);
    RAISE NOTICE 'sent number %', n;
    IF fail THEN RAISE EXCEPTION 'the integrator call failed'; END IF;
    COMMIT;
END$$;
CALL issue_direct('order-3', true);
\echo :LAST_ERROR_SQLSTATE
CALL issue_direct('order-3', false);    -- the same number

-- A DO block that shows the number, then fails.
DO $$BEGIN RAISE NOTICE 'sent number %', take_no('order-4'); RAISE EXCEPTION 'failed'; END$$;
\echo :LAST_ERROR_SQLSTATE
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-4');   -- the number shown

-- A function called by the client's statement, which then fails.
SELECT take_no('order-5'), invoice_seq.next_invoice_no(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-5');

-- A trigger that numbers the application's row; the statement fails after.
CREATE TABLE call_invoice (no bigint, key text, amount numeric);
CREATE FUNCTION number_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.no := invoice_seq.reserve_invoice_no('CALL', NEW.key);
    RAISE NOTICE 'sent number %', NEW.no;
    IF NEW.amount <= 0 THEN
        RAISE EXCEPTION 'the amount must be positive' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END$$;
CREATE TRIGGER number_invoice BEFORE INSERT ON call_invoice
    FOR EACH ROW EXECUTE FUNCTION number_invoice();
INSERT INTO call_invoice (key, amount) VALUES ('order-6', -1);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO call_invoice (key, amount) VALUES ('order-6', 10) RETURNING no;

-- Every number shown above is reserved under its key, once; none went to
-- another key.
SELECT invoice_no, idempotency_key, status
FROM invoice_seq.ledger WHERE series = 'CALL' ORDER BY invoice_no;

-- The client's own statement still numbers in its own transaction: a
-- failed statement leaves nothing, and the number is handed out again.
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-7'), invoice_seq.next_invoice_no(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-8');
SELECT count(*) FILTER (WHERE idempotency_key = 'order-7') AS order_7,
       max(invoice_no) AS highest
FROM invoice_seq.ledger WHERE series = 'CALL' AND status <> 'recyclable';

-- A function that reserves a key, then retries it inside a block with an
-- exception handler (a subtransaction): both calls reach the sequencer,
-- and the retry finds the key's committed number (issue 19, case 3: the
-- retry used to ask the sequencer forever).
SET statement_timeout = '30s';
CREATE FUNCTION retry_in_block(k text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE first bigint; again bigint;
BEGIN
    first := invoice_seq.reserve_invoice_no('CALL', k);
    BEGIN
        again := invoice_seq.reserve_invoice_no('CALL', k);
    EXCEPTION WHEN division_by_zero THEN NULL;
    END;
    RETURN first || ' then ' || again;
END$$;
SELECT retry_in_block('order-9');

-- The client's statement records a new key in its own transaction, and a
-- function it calls reserves the same key: the sequencer cannot reserve a
-- key whose number is not committed yet, and says so instead of waiting
-- for our own transaction.
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-10'), take_no('order-10');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;

-- A procedure that rolls back, then reserves in an SQL statement of its
-- own (SELECT INTO), shows the number and rolls back again: the number
-- stays reserved under its key.  Then a DO block, after that CALL, that
-- does the same and fails.
CREATE PROCEDURE issue_after_rollback(k text) LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    ROLLBACK;
    SELECT invoice_seq.reserve_invoice_no('CALL', k) INTO n;
    RAISE NOTICE 'sent number %', n;
    ROLLBACK;
END$$;
CALL issue_after_rollback('order-11');
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-11');
DO $$DECLARE n bigint;
BEGIN
    SELECT invoice_seq.reserve_invoice_no('CALL', 'order-12') INTO n;
    RAISE NOTICE 'sent number %', n;
    RAISE EXCEPTION 'failed after showing it';
END$$;
\echo :LAST_ERROR_SQLSTATE
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-12');

-- The client's own statement, when it hands the number to other code
-- before its commit: an argument of another function, or the row of a
-- table whose trigger sees it.
CREATE FUNCTION show_then_fail(n bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'sent number %', n;
    RAISE EXCEPTION 'failed after showing it';
END$$;
SELECT show_then_fail(invoice_seq.reserve_invoice_no('CALL', 'order-13'));
\echo :LAST_ERROR_SQLSTATE
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-13');
CREATE TABLE call_sent (no bigint, amount int);
CREATE FUNCTION announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'sent number %', NEW.no;
    IF NEW.amount <= 0 THEN
        RAISE EXCEPTION 'the amount must be positive' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END$$;
CREATE TRIGGER announce BEFORE INSERT ON call_sent
    FOR EACH ROW EXECUTE FUNCTION announce();
INSERT INTO call_sent VALUES (invoice_seq.reserve_invoice_no('CALL', 'order-14'), -1);
\echo :LAST_ERROR_SQLSTATE
SELECT invoice_seq.reserve_invoice_no('CALL', 'order-14');

-- Which statements record the reservation themselves: only a SELECT whose
-- own result column it is (no sequencer request), one row, run at once.
SELECT coalesce(sum(requests), 0) AS before FROM invoice_seq.stats \gset
SELECT invoice_seq.reserve_invoice_no('CALL');
SELECT 'order' AS kind, invoice_seq.reserve_invoice_no('CALL', 'order-16');
SELECT invoice_no, status FROM invoice_seq.reserve_invoice('CALL', 'order-17');
SELECT coalesce(sum(requests), 0) - :before AS by_sequencer FROM invoice_seq.stats;
SELECT invoice_seq.reserve_invoice_no('CALL')::text AS as_text;
SELECT coalesce(sum(requests), 0) - :before AS by_sequencer FROM invoice_seq.stats;
INSERT INTO call_sent VALUES (invoice_seq.reserve_invoice_no('CALL'), 1);
SELECT coalesce(sum(requests), 0) - :before AS by_sequencer FROM invoice_seq.stats;
SELECT invoice_seq.reserve_invoice_no('CALL') FROM generate_series(1, 2);
SELECT coalesce(sum(requests), 0) - :before AS by_sequencer FROM invoice_seq.stats;
WITH r AS (SELECT invoice_seq.reserve_invoice_no('CALL') AS n) SELECT n FROM r;
SELECT coalesce(sum(requests), 0) - :before AS by_sequencer FROM invoice_seq.stats;
