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

-- Gaps.  The extension never makes one; here a superuser deletes ledger
-- entries by hand, which is what check_series is there to catch.
SELECT invoice_seq.create_series('G', start_at => 10);
SELECT invoice_seq.reserve_invoice_no('G') FROM generate_series(1, 6);
DELETE FROM invoice_seq.ledger_entry
WHERE series_id = (SELECT id FROM invoice_seq.series_def WHERE name = 'G')
  AND invoice_no IN (10, 11, 13);
SELECT * FROM invoice_seq.check_series('G');
-- and per period: a gap in one year is reported in that year
SELECT invoice_seq.create_series('GY', reset => 'yearly', format => '{YY}-{n}');
SELECT invoice_seq.reserve_invoice_no('GY') FROM generate_series(1, 3);
UPDATE invoice_seq.ledger_entry SET period = '2001'
WHERE series_id = (SELECT id FROM invoice_seq.series_def WHERE name = 'GY')
  AND invoice_no = 3;
SELECT series, period = to_char(now() AT TIME ZONE 'UTC', 'YYYY') AS this_year, invoice_no, problem
FROM invoice_seq.check_series('GY');

-- All series at once; unknown and invalid names.
SELECT series, invoice_no, problem FROM invoice_seq.check_series()
WHERE problem = 'gap';
SELECT expect_error($$SELECT * FROM invoice_seq.check_series('nope')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.check_series('bad name')$$);

-- Any role may run it, through the extension's own rights.
SET ROLE regress_invoice_app;
SELECT count(*) AS problems FROM invoice_seq.check_series('G');
RESET ROLE;
