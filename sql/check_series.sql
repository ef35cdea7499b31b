--
-- check_series: no rows means healthy; 'gap' and 'stale_reservation' rows
-- otherwise.
--
SELECT * FROM invoice_seq.check_series();

-- A reservation older than stale_after is reported, not voided.
SELECT invoice_seq.alter_series('CV', stale_after => '1 microsecond');
SELECT pg_sleep(0.01);
SELECT series, period, invoice_no, problem FROM invoice_seq.check_series('CV');
SELECT status FROM invoice_seq.ledger WHERE series = 'CV' AND invoice_no = 8;
SELECT invoice_seq.void_invoice_no('CV', 8, 'reconciled: never sent');
SELECT invoice_seq.confirm_invoice_no('CV', 2, 'reconciled: accepted');
SELECT series, period, invoice_no, problem FROM invoice_seq.check_series('CV');

-- Gaps.  The extension never makes one, and the ledger's access method
-- refuses to delete entries; a gap can still come from outside, such as a
-- restore of a damaged copy.  Here a superuser inserts entries with holes.
-- While the allocator has not read a period, the numbers missing below its
-- highest one are free (a transaction that did not commit, before a
-- restart, leaves exactly that): they show as recyclable, and the next
-- callers get them.
SELECT invoice_seq.create_series('R', start_at => 10);
INSERT INTO invoice_seq.ledger_entry
    (series_id, period, invoice_no, display_no, status, reserved_at, reserved_by)
SELECT (SELECT id FROM invoice_seq.series_def WHERE name = 'R'), '', n, n::text,
       'reserved', now(), 'restore'
FROM unnest(ARRAY[12, 14]) n;
SELECT * FROM invoice_seq.check_series('R');
SELECT invoice_no, status FROM invoice_seq.ledger WHERE series = 'R' ORDER BY 1;
SELECT invoice_seq.reserve_invoice_no('R') FROM generate_series(1, 4);
-- Once the allocator has read the period, a number missing that it did not
-- hand out is a gap.
SELECT invoice_seq.create_series('G', start_at => 10, owner => 'regress_invoice_app');
SELECT invoice_seq.reserve_invoice_no('G');
INSERT INTO invoice_seq.ledger_entry
    (series_id, period, invoice_no, display_no, status, reserved_at, reserved_by)
SELECT (SELECT id FROM invoice_seq.series_def WHERE name = 'G'), '', n, n::text,
       'reserved', now(), 'restore'
FROM unnest(ARRAY[12, 14, 15]) n;
SELECT * FROM invoice_seq.check_series('G');
-- and per period: a gap in one year is reported in that year
SELECT invoice_seq.create_series('GY', reset => 'yearly', format => '{YY}-{n}');
SET invoice_seq.test_clock = '2001-06-01 12:00+00';
SELECT invoice_seq.reserve_invoice_no('GY');
RESET invoice_seq.test_clock;
SELECT invoice_seq.reserve_invoice_no('GY') FROM generate_series(1, 2);
INSERT INTO invoice_seq.ledger_entry
    (series_id, period, invoice_no, display_no, status, reserved_at, reserved_by)
VALUES ((SELECT id FROM invoice_seq.series_def WHERE name = 'GY'), '2001', 3, '01-3',
        'reserved', now(), 'restore');
SELECT series, period = to_char(now() AT TIME ZONE 'UTC', 'YYYY') AS this_year, invoice_no, problem
FROM invoice_seq.check_series('GY');

-- All series at once; unknown and invalid names.
SELECT series, invoice_no, problem FROM invoice_seq.check_series()
WHERE problem = 'gap';
SELECT expect_error($$SELECT * FROM invoice_seq.check_series('nope')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.check_series('bad name')$$);

-- Members of the series' owner role may run it, through the extension's own
-- rights.
SET ROLE regress_invoice_app;
SELECT count(*) AS problems FROM invoice_seq.check_series('G');
RESET ROLE;

-- A row put into the ledger by hand above what the allocator handed out:
-- the call that meets it fails (23505) and hands out nothing; the allocator
-- then reads the period again, and numbering goes on around it.
SELECT invoice_seq.reserve_invoice_no('G');
SELECT left(expect_error($$SELECT invoice_seq.reserve_invoice_no('G')$$), 5) AS sqlstate;
SELECT invoice_seq.reserve_invoice_no('G') FROM generate_series(1, 2);
SELECT count(*) = max(invoice_no) - 9 AS dense FROM invoice_seq.ledger WHERE series = 'G';
SELECT * FROM invoice_seq.check_series('G');
