--
-- National presets (create_series_preset): each fixes and checks what its
-- country's rule fixes, and alter_series cannot undo it.
--

-- Turkey, e-Fatura / e-Arsiv: series code, year, 9-digit sequence.
SELECT invoice_seq.create_series_preset('ABC', preset => 'tr_efatura', time_zone => 'Europe/Istanbul');
SELECT series, reset, format, chronological, preset FROM invoice_seq.series WHERE series = 'ABC';
SELECT display_no ~ '^[A-Z0-9]{3}20[0-9]{2}[0-9]{9}$' AS efatura_number,
       right(display_no, 9) AS sequence
FROM invoice_seq.next_invoice('ABC');
-- the name is the series code: 3 characters, A-Z or 0-9
SELECT expect_error($$SELECT invoice_seq.create_series_preset('ABCD', preset => 'tr_efatura')$$);
SELECT expect_error($$SELECT invoice_seq.create_series_preset('ab1', preset => 'tr_efatura')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('ABC', format => '{n}')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('ABC', chronological => false)$$);
-- a 9-digit sequence ends at 999999999
SELECT invoice_seq.create_series_preset('Z99', start_at => 999999999, preset => 'tr_efatura');
SELECT invoice_seq.next_invoice_no('Z99');
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('Z99')$$);

-- Portugal: the ATCUD, "<validation code>-<number>".
SELECT invoice_seq.create_series_preset('FT2026', preset => 'pt_atcud', validation_code => 'CSDF7T5H');
SELECT format, chronological, preset, validation_code FROM invoice_seq.series WHERE series = 'FT2026';
SELECT display_no FROM invoice_seq.next_invoice('FT2026');
SELECT expect_error($$SELECT invoice_seq.create_series_preset('FT2', preset => 'pt_atcud')$$);
SELECT expect_error($$SELECT invoice_seq.create_series_preset('FT3', preset => 'pt_atcud', validation_code => 'csdf7t5h')$$);
SELECT expect_error($$SELECT invoice_seq.create_series_preset('FT4', preset => 'pt_atcud', validation_code => 'CSDF7')$$);
SELECT expect_error($$SELECT invoice_seq.create_series_preset('FT5', 'fr', validation_code => 'CSDF7T5H')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('FT2026', format => '{n}')$$);

-- France: continuous and chronological; issued numbers are never voided.
SELECT invoice_seq.create_series_preset('FR', 'fr', format => 'F-{n:6}');
SELECT format, chronological FROM invoice_seq.series WHERE series = 'FR';
SELECT invoice_seq.alter_series('FR', format => 'FA-{n:6}');
SELECT expect_error($$SELECT invoice_seq.alter_series('FR', chronological => false)$$);
SELECT invoice_seq.next_invoice_no('FR');
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('FR', 1, 'typo')$$);

-- a preset is required and known; what it fixes cannot be asked for
SELECT expect_error($$SELECT invoice_seq.create_series_preset('Q', 'xx')$$);
SELECT expect_error($$SELECT invoice_seq.create_series_preset('Q', NULL)$$);
SELECT expect_error($$SELECT invoice_seq.create_series_preset('Q', 'tr_efatura', format => '{n}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series_preset('Q1', 'fr', format => 'F-{n}', reset => 'yearly')$$);
SELECT count(*) AS created FROM invoice_seq.series WHERE series IN ('ABCD', 'ab1', 'FT2', 'FT3', 'FT4', 'FT5', 'Q');
