--
-- Chronological order: within a (series, period) a higher number is never
-- issued on an earlier day, in the series' time zone, than a lower one.
-- invoice_seq.test_clock (superuser only) puts numbers on given days.
--
SELECT invoice_seq.create_series('CH', reset => 'yearly', format => 'CH-{YYYY}-{n}',
                                 time_zone => 'Europe/Berlin');
SELECT invoice_seq.create_series('FREE', chronological => false);
SELECT series, chronological FROM invoice_seq.series
WHERE series IN ('CH', 'FREE') ORDER BY series;

-- Day one: number 1 is taken and rolled back inside a transaction that
-- goes on to issue number 2 (a savepoint stands in for a second session).
SET invoice_seq.test_clock = '2026-03-02 10:00+01';
BEGIN;
SAVEPOINT a;
SELECT invoice_seq.next_invoice_no('CH');
ROLLBACK TO a;
SELECT invoice_seq.next_invoice_no('CH');
COMMIT;

-- Day two: issuing 1 now would date it after 2.  Recycling voids it,
-- recording why, and hands out a fresh number instead.
SET invoice_seq.test_clock = '2026-03-03 09:00+01';
SELECT * FROM invoice_seq.next_invoice('CH');
SELECT invoice_no, display_no, status, voided_by, void_reason
FROM invoice_seq.ledger WHERE series = 'CH' ORDER BY invoice_no;

-- On the same day, a recycled number is fine.
BEGIN;
SAVEPOINT a;
SELECT invoice_seq.next_invoice_no('CH');
ROLLBACK TO a;
SELECT invoice_seq.next_invoice_no('CH');
COMMIT;
SET invoice_seq.test_clock = '2026-03-03 23:59+01';
SELECT invoice_seq.next_invoice_no('CH');

-- The day is the series' day.  Number 7 is issued at 23:30 UTC on 3 March,
-- already 4 March in Berlin, so 6 may still be issued on the 4th.
SET invoice_seq.test_clock = '2026-03-03 23:30+00';
BEGIN;
SAVEPOINT a;
SELECT invoice_seq.next_invoice_no('CH');
ROLLBACK TO a;
SELECT invoice_seq.next_invoice_no('CH');
COMMIT;
SET invoice_seq.test_clock = '2026-03-04 09:00+01';
SELECT invoice_seq.next_invoice_no('CH');
SELECT invoice_no, status, confirmed_at AT TIME ZONE 'Europe/Berlin' AS berlin_time
FROM invoice_seq.ledger WHERE series = 'CH' ORDER BY invoice_no;

-- Two-phase: a confirm that would date a number after a higher issued one
-- is refused, with a hint to void it.  Voiding it works.
SELECT invoice_seq.reserve_invoice_no('CH');
SELECT invoice_seq.next_invoice_no('CH');
SET invoice_seq.test_clock = '2026-03-05 08:00+01';
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CH', 8, period => '2026')$$);
SELECT invoice_seq.confirm_invoice_no('CH', 8, period => '2026');
SELECT invoice_seq.void_invoice_no('CH', 8, 'confirmed too late', period => '2026');
-- a reservation confirmed before any higher number is issued is fine
SELECT invoice_seq.reserve_invoice_no('CH');
SELECT invoice_seq.confirm_invoice_no('CH', 10, period => '2026');

-- A clock that goes backwards cannot date a number before a lower one.
SELECT invoice_seq.reserve_invoice_no('CH');
SET invoice_seq.test_clock = '2026-03-04 08:00+01';
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CH', 11, period => '2026')$$);
SET invoice_seq.test_clock = '2026-03-05 08:00+01';
SELECT invoice_seq.confirm_invoice_no('CH', 11, period => '2026');

-- Periods: a one-step number of a period that has ended can no longer be
-- issued.  The first allocation of a later period voids it.
SET invoice_seq.test_clock = '2026-12-31 23:00+01';
BEGIN;
SELECT invoice_seq.next_invoice_no('CH');
ROLLBACK;
SET invoice_seq.test_clock = '2027-01-01 10:00+01';
SELECT * FROM invoice_seq.next_invoice('CH');
SELECT period, invoice_no, status, void_reason
FROM invoice_seq.ledger WHERE series = 'CH' AND invoice_no >= 11
ORDER BY period, invoice_no;
SELECT * FROM invoice_seq.check_series('CH');

-- A series that is not chronological recycles whatever the day, and
-- confirms late.  check_series reports the disorder once the series is
-- made chronological; from then on the rule is enforced.
SET invoice_seq.test_clock = '2026-03-02 10:00+01';
SELECT invoice_seq.reserve_invoice_no('FREE');
BEGIN;
SAVEPOINT a;
SELECT invoice_seq.next_invoice_no('FREE');
ROLLBACK TO a;
SELECT invoice_seq.next_invoice_no('FREE');
COMMIT;
SET invoice_seq.test_clock = '2026-03-09 10:00+01';
SELECT invoice_seq.next_invoice_no('FREE');
SELECT invoice_seq.confirm_invoice_no('FREE', 1);
SELECT invoice_no, status, confirmed_at::date FROM invoice_seq.ledger
WHERE series = 'FREE' ORDER BY invoice_no;
SELECT * FROM invoice_seq.check_series('FREE');
SELECT invoice_seq.alter_series('FREE', chronological => true);
SELECT * FROM invoice_seq.check_series('FREE');
SELECT invoice_seq.reserve_invoice_no('FREE');
SELECT invoice_seq.next_invoice_no('FREE');
SET invoice_seq.test_clock = '2026-03-10 10:00+01';
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('FREE', 4)$$);
SELECT invoice_seq.alter_series('FREE', chronological => false);
SELECT invoice_seq.confirm_invoice_no('FREE', 4);
SELECT series, chronological FROM invoice_seq.series WHERE series = 'FREE';

-- Settings and refusals.
SELECT expect_error($$SELECT invoice_seq.create_series('X', chronological => NULL)$$);
-- alter_series with chronological NULL keeps the setting
SELECT invoice_seq.alter_series('FREE', chronological => NULL);
SELECT chronological FROM invoice_seq.series WHERE series = 'FREE';
-- the clock is for superusers only, and must be a timestamp
RESET invoice_seq.test_clock;
SET ROLE regress_invoice_app;
SELECT expect_error($$SET invoice_seq.test_clock = '2026-01-01'$$);
RESET ROLE;
SET invoice_seq.test_clock = 'yesterday-ish';
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('CH')$$);
RESET invoice_seq.test_clock;

-- The end of a period.  A free number of a period that has ended can never
-- be issued (a number is dated in its period): the first number of a later
-- period voids it, in the same transaction.
SELECT invoice_seq.create_series('PE', reset => 'yearly', format => 'PE-{YYYY}-{n}');
SET invoice_seq.test_clock = '2030-12-31 10:00+00';
-- number 1 is rolled back while number 2, reserved by the sequencer in a
-- transaction of its own, stays: 1 is free
BEGIN;
SAVEPOINT s;
SELECT invoice_seq.next_invoice_no('PE');
SELECT invoice_seq.reserve_invoice_no('PE', 'pe-2');
ROLLBACK TO s;
COMMIT;
SELECT invoice_seq.confirm_invoice_no('PE', 2, 'ext-2', '2030');
-- a later transaction takes the free number 1 and rolls back: it is free again
BEGIN;
SELECT invoice_seq.next_invoice_no('PE');
ROLLBACK;
SELECT period, invoice_no, status FROM invoice_seq.ledger WHERE series = 'PE'
ORDER BY period, invoice_no;
SET invoice_seq.test_clock = '2031-01-01 10:00+00';
-- if the transaction that would void it aborts, the number stays free
BEGIN;
SELECT invoice_seq.next_invoice_no('PE');
ROLLBACK;
SELECT period, invoice_no, status FROM invoice_seq.ledger WHERE series = 'PE'
ORDER BY period, invoice_no;
SELECT * FROM invoice_seq.next_invoice('PE');
SELECT period, invoice_no, display_no, status, voided_by, void_reason
FROM invoice_seq.ledger WHERE series = 'PE' ORDER BY period, invoice_no;
SELECT * FROM invoice_seq.check_series('PE');
RESET invoice_seq.test_clock;
