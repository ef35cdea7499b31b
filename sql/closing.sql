--
-- close_period() inside a transaction (issue 19, case 7).  The closing
-- transaction takes no more numbers of the period at once; everyone else
-- once it commits.  Rolled back, it changes nothing: the period stays
-- open, and its free numbers stay free.
--
SET invoice_seq.test_clock = '2026-01-15 12:00+00';
SELECT invoice_seq.create_series('M2', reset => 'monthly', format => 'M{YYYY}{MM}-{n}');
-- a free number below a higher one: 2 is taken in a transaction that rolls
-- back, while the sequencer commits 3, which is then confirmed
SELECT invoice_seq.next_invoice_no('M2');
BEGIN;
SELECT invoice_seq.next_invoice_no('M2');
SELECT invoice_seq.reserve_invoice_no('M2');
ROLLBACK;
SELECT invoice_seq.confirm_invoice_no('M2', 3, 'ext-3', period => '2026-01');
SELECT invoice_no, status FROM invoice_seq.ledger WHERE series = 'M2' ORDER BY 1;

-- A closing rolled back: refused numbers inside it, nothing changed after.
BEGIN;
SELECT issued, voided, last_no FROM invoice_seq.close_period('M2', '2026-01', 'dry run');
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('M2')$$);
ROLLBACK;
SELECT count(*) AS closings FROM invoice_seq.closed_periods WHERE series = 'M2';
SELECT invoice_no, status FROM invoice_seq.ledger WHERE series = 'M2' ORDER BY 1;
SELECT * FROM invoice_seq.check_series('M2');
-- the period goes on, and its free number is handed out first
SELECT invoice_seq.next_invoice_no('M2');

-- Numbers taken before the closing in the same transaction are counted;
-- a number asked for after it is refused.
SELECT invoice_seq.create_series('CL', reset => 'monthly', format => 'C{YYYY}{MM}-{n}');
SELECT invoice_seq.next_invoice_no('CL') FROM generate_series(1, 2);
BEGIN;
SELECT invoice_seq.next_invoice_no('CL');
SELECT issued, voided, last_no FROM invoice_seq.close_period('CL', '2026-01', 'month end');
SAVEPOINT s;
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('CL')$$);
ROLLBACK TO s;
COMMIT;
SELECT period, issued, voided, last_no FROM invoice_seq.closed_periods WHERE series = 'CL';
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('CL')$$);
SELECT count(*) AS entries, max(invoice_no) AS highest
FROM invoice_seq.ledger WHERE series = 'CL';
SELECT * FROM invoice_seq.verify_series('CL', '2026-01');
SELECT * FROM invoice_seq.check_series('CL');

-- verify_series checks the closing against the ledger and its chain.  A
-- superuser who rewrites the catalog can rewrite a closing (here: the
-- access method switched to heap for the UPDATE), or slip an entry into a
-- closed period (INSERT is what the ledger allows): both are reported.
BEGIN;
UPDATE pg_class SET relam = (SELECT oid FROM pg_am WHERE amname = 'heap')
WHERE oid = 'invoice_seq.period_close'::regclass;
UPDATE invoice_seq.period_close SET issued = issued - 1, last_no = last_no - 1
WHERE period = '2026-01' AND series_id = (SELECT id FROM invoice_seq.series_def WHERE name = 'CL');
UPDATE pg_class SET relam = (SELECT oid FROM pg_am WHERE amname = 'invoice_ledger')
WHERE oid = 'invoice_seq.period_close'::regclass;
SELECT invoice_no, problem, regexp_replace(detail, '[0-9a-f]{64}', '<link>', 'g') AS detail
FROM invoice_seq.verify_series('CL', '2026-01');
ROLLBACK;
BEGIN;
INSERT INTO invoice_seq.ledger_entry (series_id, period, invoice_no, display_no, status,
    reserved_at, reserved_by, confirmed_at, confirmed_by)
SELECT id, '2026-01', 4, 'C202601-4', 'issued', now(), 'forger', now(), 'forger'
FROM invoice_seq.series_def WHERE name = 'CL';
SELECT invoice_no, problem, regexp_replace(detail, '[0-9a-f]{64}', '<link>', 'g') AS detail
FROM invoice_seq.verify_series('CL', '2026-01');
ROLLBACK;
SELECT * FROM invoice_seq.verify_series('CL', '2026-01');

-- A closing inside a savepoint that rolls back: also undone.
SELECT invoice_seq.create_series('SP', reset => 'monthly', format => 'S{YYYY}{MM}-{n}');
SELECT invoice_seq.next_invoice_no('SP');
BEGIN;
SAVEPOINT s;
SELECT issued FROM invoice_seq.close_period('SP', '2026-01', 'oops');
ROLLBACK TO s;
SELECT invoice_seq.next_invoice_no('SP');
COMMIT;
SELECT count(*) AS closings FROM invoice_seq.closed_periods WHERE series = 'SP';

-- A closing cannot be prepared: its effect would belong to another session.
BEGIN;
SELECT issued FROM invoice_seq.close_period('SP', '2026-01', 'two-phase');
PREPARE TRANSACTION 'close-sp';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS closings FROM invoice_seq.closed_periods WHERE series = 'SP';
RESET invoice_seq.test_clock;
