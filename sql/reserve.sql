--
-- Reservation: numbering, autonomy, idempotency keys, periods and display
-- numbers, and every refusal.
--

-- Numbers start at start_at and follow each other; the reservation is
-- committed by the sequencer, so the caller's ROLLBACK does not undo it.
SELECT invoice_seq.reserve_invoice_no('INV');
SELECT series, period, invoice_no, display_no, status
FROM invoice_seq.reserve_invoice('INV');
BEGIN;
SELECT invoice_seq.reserve_invoice_no('INV');
ROLLBACK;
SELECT invoice_no, display_no, status, reserved_by = current_user AS by_me
FROM invoice_seq.ledger WHERE series = 'INV' ORDER BY invoice_no;

-- Even a caller's transaction that fails after reserving leaves the number
-- reserved, and the next number follows it.
BEGIN;
SELECT invoice_seq.reserve_invoice_no('INV');
SELECT invoice_seq.next_invoice_no(NULL);   -- any error: this one is ours
ROLLBACK;
SELECT invoice_seq.reserve_invoice_no('INV');

-- Idempotency keys: the same key returns the same number, nothing new is
-- allocated, whether the first call's transaction committed or not.
SELECT invoice_seq.reserve_invoice_no('INV', 'order-1');
SELECT invoice_seq.reserve_invoice_no('INV', 'order-1');
BEGIN;
SELECT invoice_seq.reserve_invoice_no('INV', 'order-2');
ROLLBACK;
SELECT invoice_no, status FROM invoice_seq.reserve_invoice('INV', 'order-2');
SELECT count(*) AS entries, max(invoice_no) AS highest
FROM invoice_seq.ledger WHERE series = 'INV';

-- A key belongs to its series: the same key in another series is unrelated.
SELECT invoice_no, period = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') AS this_month
FROM invoice_seq.reserve_invoice('M.1', 'order-1');

-- A key whose number was issued returns it, status 'issued'.
SELECT invoice_seq.confirm_invoice_no('INV', 6, 'ext-6');
SELECT invoice_no, status FROM invoice_seq.reserve_invoice('INV', 'order-1');

-- A key whose number was voided is refused: a dead result is never handed
-- back, and no new number is allocated under it.
SELECT invoice_seq.void_invoice_no('INV', 7, 'integrator rejected');
-- (expect_error runs it in a subtransaction, so the sequencer answers; the
-- plain statement is answered by the caller's backend, with the same code)
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('INV', 'order-2')$$);
SELECT invoice_seq.reserve_invoice_no('INV', 'order-2');
\echo :LAST_ERROR_SQLSTATE
SELECT invoice_seq.reserve_invoice_no('INV', 'order-2-attempt-2');

-- Key length: 1 to 255 bytes.
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('INV', '')$$);
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('INV', repeat('k', 256))$$);
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('INV', repeat('é', 128))$$);
SELECT invoice_seq.reserve_invoice_no('INV', repeat('k', 255));
SELECT invoice_seq.reserve_invoice_no('INV', repeat('k', 255));
-- keys are stored literally
SELECT invoice_seq.reserve_invoice_no('INV', $$'); DELETE FROM invoice_seq.ledger_entry; --$$);
SELECT idempotency_key FROM invoice_seq.ledger WHERE series = 'INV' AND invoice_no = 10;

-- Other refusals; none of them allocates a number.
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no(NULL)$$);
SELECT expect_error($$SELECT invoice_seq.reserve_invoice(NULL)$$);
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('nope')$$);
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('bad name')$$);
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no(repeat('x', 1000000))$$);
BEGIN READ ONLY;
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('INV')$$);
ROLLBACK;
SELECT count(*) AS entries, max(invoice_no) AS highest
FROM invoice_seq.ledger WHERE series = 'INV';

-- A transaction that holds the series lock (it altered the series) cannot
-- reserve in that series: the sequencer would wait for it.
BEGIN;
SELECT invoice_seq.alter_series('INV', stale_after => '2 hours');
SELECT invoice_seq.reserve_invoice_no('INV');
ROLLBACK;

-- Yearly and monthly series: the period is the reservation's year or month
-- in the series' time zone, and the display number shows it.
SELECT period = to_char(now() AT TIME ZONE 'Europe/Paris', 'YYYY') AS period_ok,
       invoice_no,
       display_no = 'INV-' || to_char(now() AT TIME ZONE 'Europe/Paris', 'YYYY') || '-001000'
           AS display_ok
FROM invoice_seq.reserve_invoice('INV-Y');
SELECT invoice_no,
       display_no = 'INV-' || to_char(now() AT TIME ZONE 'Europe/Paris', 'YYYY') || '-001001'
           AS display_ok
FROM invoice_seq.reserve_invoice('INV-Y');
SELECT invoice_no,
       display_no = 'M' || to_char(now() AT TIME ZONE 'UTC', 'YYMM') || '/2' AS display_ok
FROM invoice_seq.reserve_invoice('M.1');

-- A new format applies to numbers reserved from then on; numbers already
-- handed out keep the display number they were given.
SELECT invoice_seq.alter_series('INV', format => 'INV/{n:3}');
SELECT invoice_no, display_no FROM invoice_seq.reserve_invoice('INV');
SELECT invoice_no, display_no FROM invoice_seq.ledger
WHERE series = 'INV' AND invoice_no IN (1, 11) ORDER BY invoice_no;

-- The end of bigint: a clear error, never a wrap-around.
SELECT invoice_seq.create_series('END', start_at => 9223372036854775806);
SELECT invoice_seq.reserve_invoice_no('END');
SELECT invoice_seq.reserve_invoice_no('END');
SELECT invoice_seq.reserve_invoice_no('END');
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('END')$$);

-- A series that handed out numbers cannot be dropped.
SELECT invoice_seq.drop_series('INV');

-- Applications need no privileges on the tables to reserve and confirm.
SET ROLE regress_invoice_app;
SELECT invoice_seq.reserve_invoice_no('INV');
SELECT invoice_seq.confirm_invoice_no('INV', 12);
SELECT invoice_no, status, reserved_by, confirmed_by
FROM invoice_seq.ledger WHERE series = 'INV' AND invoice_no = 12;
SELECT expect_error($$SELECT * FROM invoice_seq.ledger_entry$$);
SELECT expect_error($$DELETE FROM invoice_seq.ledger_entry$$);
RESET ROLE;

-- Every series is dense.
SELECT * FROM invoice_seq.check_series() WHERE problem = 'gap';
