--
-- Confirm (reserved -> issued) and void (reserved -> voided), in the
-- caller's transaction, and every illegal transition.
--
SELECT invoice_seq.create_series('CV');
SELECT invoice_seq.reserve_invoice_no('CV') FROM generate_series(1, 8);

-- Confirm takes effect with the caller's transaction.
BEGIN;
SELECT invoice_seq.confirm_invoice_no('CV', 1, 'ext-1');
SELECT status, external_ref, confirmed_by = current_user AS by_me,
       confirmed_at IS NOT NULL AS dated
FROM invoice_seq.ledger WHERE series = 'CV' AND invoice_no = 1;
COMMIT;
BEGIN;
SELECT invoice_seq.confirm_invoice_no('CV', 2, 'ext-2');
ROLLBACK;
SELECT invoice_no, status, external_ref FROM invoice_seq.ledger
WHERE series = 'CV' AND invoice_no IN (1, 2) ORDER BY invoice_no;

-- Confirming again with the same external_ref is a harmless retry; with
-- another one it is refused.  NULL counts as a reference of its own.
SELECT invoice_seq.confirm_invoice_no('CV', 1, 'ext-1');
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 1, 'ext-other')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 1)$$);
SELECT invoice_seq.confirm_invoice_no('CV', 3);
SELECT invoice_seq.confirm_invoice_no('CV', 3);
SELECT invoice_seq.confirm_invoice_no('CV', 3, 'late-ref');

-- Void takes effect with the caller's transaction and records why.
BEGIN;
SELECT invoice_seq.void_invoice_no('CV', 4, 'integrator rejected the invoice');
ROLLBACK;
SELECT status FROM invoice_seq.ledger WHERE series = 'CV' AND invoice_no = 4;
SELECT invoice_seq.void_invoice_no('CV', 4, 'integrator rejected the invoice');
SELECT status, void_reason, voided_by = current_user AS by_me
FROM invoice_seq.ledger WHERE series = 'CV' AND invoice_no = 4;

-- Illegal transitions (55I02 for a voided number, 55I03 for an issued one,
-- 55000 for a one-step one), each message naming the series and number.
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', 4, 'again')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 4, 'ext-4')$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', 1, 'changed my mind')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 9)$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', 9, 'never handed out')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 9223372036854775807)$$);
-- two of them in full
SELECT invoice_seq.void_invoice_no('CV', 1, 'changed my mind');
SELECT invoice_seq.confirm_invoice_no('CV', 9);

-- Invalid arguments.
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 0)$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', -1)$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', 0, 'x')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no(NULL, 5)$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', NULL)$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no(NULL, 5, 'x')$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', NULL, 'x')$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', 5, NULL)$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', 5, '')$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', 5, E' \t\n')$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CV', 5, repeat('r', 1001))$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 5, '')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 5, repeat('e', 256))$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('nope', 5)$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('nope', 5, 'x')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('bad name', 5)$$);
-- the void reason in full
SELECT invoice_seq.void_invoice_no('CV', 5, NULL);

-- References and reasons are stored literally.
SELECT invoice_seq.confirm_invoice_no('CV', 5, $$x'); DROP TABLE invoice_seq.ledger_entry; --$$);
SELECT invoice_seq.void_invoice_no('CV', 6, repeat('r', 1000));
SELECT invoice_no, external_ref, length(void_reason) FROM invoice_seq.ledger
WHERE series = 'CV' AND invoice_no IN (5, 6) ORDER BY invoice_no;

-- Periods: optional and empty for a series that never resets ...
SELECT invoice_seq.confirm_invoice_no('CV', 7, NULL, '');
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CV', 8, NULL, '2026')$$);
-- ... required and well formed for one that resets.
SELECT invoice_seq.create_series('CVY', reset => 'yearly', format => '{YYYY}/{n}');
SELECT invoice_seq.create_series('CVM', reset => 'monthly', format => '{YYYY}-{MM}/{n}');
SELECT invoice_no FROM invoice_seq.reserve_invoice('CVY');
SELECT invoice_no FROM invoice_seq.reserve_invoice('CVM');
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CVY', 1)$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('CVY', 1, 'x')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CVY', 1, NULL, '26')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CVY', 1, NULL, '2026-01')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CVM', 1, NULL, '2026')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CVM', 1, NULL, '2026-13')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CVM', 1, NULL, '2026-1x')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('CVY', 1, NULL, '1999')$$);
-- the missing period in full
SELECT invoice_seq.confirm_invoice_no('CVY', 1);
SELECT invoice_seq.confirm_invoice_no('CVY', 1, 'y-1', to_char(now() AT TIME ZONE 'UTC', 'YYYY'));
SELECT invoice_seq.void_invoice_no('CVM', 1, 'test', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'));
SELECT series, invoice_no, status FROM invoice_seq.ledger
WHERE series IN ('CVY', 'CVM') ORDER BY series;

-- The final state of the series.
SELECT invoice_no, display_no, status, external_ref, void_reason IS NOT NULL AS has_reason
FROM invoice_seq.ledger WHERE series = 'CV' ORDER BY invoice_no;
