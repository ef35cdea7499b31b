--
-- One-step numbering: next_invoice_no() and next_invoice() in the caller's
-- transaction.  A number is issued exactly when that transaction commits;
-- a number whose transaction does not commit is handed out again, lowest
-- first, before any fresh number.
--
SELECT invoice_seq.create_series('ONE', owner => 'regress_invoice_app');
GRANT EXECUTE ON FUNCTION invoice_seq.next_invoice_no(text),
                          invoice_seq.next_invoice(text) TO regress_invoice_app;

-- Autocommit: issued at once, by the caller, dated when it was handed out.
SET ROLE regress_invoice_app;
SELECT invoice_seq.next_invoice_no('ONE');
SELECT * FROM invoice_seq.next_invoice('ONE');
RESET ROLE;
SELECT invoice_no, status, one_step, confirmed_by, reserved_by,
       confirmed_at = reserved_at AS dated_when_handed_out
FROM invoice_seq.ledger WHERE series = 'ONE' ORDER BY invoice_no;

-- Inside a transaction the number is issued for that transaction; other
-- sessions see it reserved until the commit (test/specs/one_step_open.spec).
BEGIN;
SELECT invoice_seq.next_invoice_no('ONE');
SELECT status FROM invoice_seq.ledger WHERE series = 'ONE' AND invoice_no = 3;
COMMIT;
SELECT status FROM invoice_seq.ledger WHERE series = 'ONE' AND invoice_no = 3;

-- ROLLBACK: the numbers are not issued, not voided, and not a gap.  They
-- are 'recyclable', and the next callers get them, lowest first.
BEGIN;
SELECT invoice_seq.next_invoice_no('ONE');
SELECT invoice_seq.next_invoice_no('ONE');
ROLLBACK;
SELECT invoice_no, status FROM invoice_seq.ledger
WHERE series = 'ONE' AND invoice_no > 3 ORDER BY invoice_no;
SELECT * FROM invoice_seq.check_series('ONE');
SELECT invoice_seq.next_invoice_no('ONE');
SELECT invoice_seq.next_invoice_no('ONE');
SELECT invoice_seq.next_invoice_no('ONE');

-- An error aborts the transaction: same outcome as ROLLBACK.
BEGIN;
SELECT invoice_seq.next_invoice_no('ONE');
SELECT invoice_seq.next_invoice_no(NULL);   -- any error: this one is ours
ROLLBACK;
SELECT invoice_seq.next_invoice_no('ONE');

-- A savepoint rolled back takes its number with it, but the number is only
-- handed out again once the whole transaction is over; the transaction's
-- next call gets a fresh one.
BEGIN;
SAVEPOINT a;
SELECT invoice_seq.next_invoice_no('ONE');
ROLLBACK TO a;
SELECT invoice_seq.next_invoice_no('ONE');
COMMIT;
SELECT invoice_no, status FROM invoice_seq.ledger
WHERE series = 'ONE' AND invoice_no >= 8 ORDER BY invoice_no;
SELECT invoice_seq.next_invoice_no('ONE');

-- The usual use: the number goes straight into the application's row.
CREATE TABLE app_invoice (no bigint PRIMARY KEY, customer text NOT NULL);
INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('ONE'), 'ACME');
INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('ONE'), NULL);
INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('ONE'), 'Globex');
SELECT * FROM app_invoice ORDER BY no;

-- Mixing with two-phase reservations: a reservation also takes a recyclable
-- number first, and from then on it is an ordinary reservation, with its
-- idempotency key.
BEGIN;
SELECT invoice_seq.next_invoice_no('ONE');
ROLLBACK;
SELECT invoice_seq.reserve_invoice_no('ONE', 'order-1');
SELECT invoice_seq.reserve_invoice_no('ONE', 'order-1');
SELECT invoice_seq.next_invoice_no('ONE');
SELECT invoice_seq.confirm_invoice_no('ONE', 12);
SELECT invoice_no, status, one_step, idempotency_key FROM invoice_seq.ledger
WHERE series = 'ONE' AND invoice_no >= 12 ORDER BY invoice_no;

-- A one-step number is decided by the transaction that took it: confirm and
-- void are refused, whether it is recyclable or issued.
BEGIN;
SELECT invoice_seq.next_invoice_no('ONE');
ROLLBACK;
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('ONE', 14)$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('ONE', 14, 'typo')$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('ONE', 13, 'typo')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('ONE', 13)$$);
SELECT invoice_seq.next_invoice_no('ONE');

-- Isolation levels: the number is issued in REPEATABLE READ and
-- SERIALIZABLE transactions too, whose snapshot predates it.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) > 0 AS snapshot_taken FROM invoice_seq.ledger;
SELECT invoice_seq.next_invoice_no('ONE');
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) > 0 AS snapshot_taken FROM invoice_seq.ledger;
SELECT invoice_seq.next_invoice_no('ONE');
COMMIT;
SELECT invoice_no, status FROM invoice_seq.ledger
WHERE series = 'ONE' AND invoice_no >= 14 ORDER BY invoice_no;

-- PREPARE TRANSACTION is refused after next_invoice_no(), and the number
-- is handed out again.  Transactions without one-step numbers prepare.
BEGIN;
SELECT invoice_seq.next_invoice_no('ONE');
PREPARE TRANSACTION 'regress_one_step';
SELECT invoice_no, status FROM invoice_seq.ledger
WHERE series = 'ONE' AND invoice_no = 17;
SELECT invoice_seq.next_invoice_no('ONE');
BEGIN;
SELECT invoice_seq.reserve_invoice_no('ONE');
SELECT invoice_seq.confirm_invoice_no('ONE', 18);
PREPARE TRANSACTION 'regress_two_phase';
COMMIT PREPARED 'regress_two_phase';
SELECT invoice_no, status FROM invoice_seq.ledger
WHERE series = 'ONE' AND invoice_no = 18;

-- Refusals.
SELECT expect_error($$SELECT invoice_seq.next_invoice_no(NULL)$$);
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('NOPE')$$);
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.next_invoice(repeat('x', 64))$$);
BEGIN READ ONLY;
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('ONE')$$);
ROLLBACK;
BEGIN;
SELECT invoice_seq.alter_series('ONE', stale_after => '1 hour');
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('ONE')$$);
ROLLBACK;

-- The ledger of the series is dense, and healthy.
SELECT count(*) AS entries, min(invoice_no), max(invoice_no),
       count(*) FILTER (WHERE status = 'issued') AS issued
FROM invoice_seq.ledger WHERE series = 'ONE';
SELECT * FROM invoice_seq.check_series('ONE');
