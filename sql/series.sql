--
-- Series: create, alter, drop, the series view, and every refusal.
--
SELECT invoice_seq.create_series('INV', owner => 'regress_invoice_app');
SELECT invoice_seq.create_series('INV-Y', start_at => 1000, reset => 'yearly',
                                 format => 'INV-{YYYY}-{n:6}',
                                 time_zone => 'Europe/Paris');
SELECT invoice_seq.create_series('M.1', reset => 'monthly', format => 'M{YY}{MM}/{n}',
                                 stale_after => '2 days');
SELECT series, start_at, reset, format, stale_after, time_zone,
       created_by = current_user AS created_by_me
FROM invoice_seq.series ORDER BY series;

-- A duplicate name, and NULL in each argument.
SELECT expect_error($$SELECT invoice_seq.create_series('INV')$$);
SELECT expect_error($$SELECT invoice_seq.create_series(NULL)$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', NULL)$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', reset => NULL)$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => NULL)$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', stale_after => NULL)$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', time_zone => NULL)$$);

-- Names.
SELECT expect_error($$SELECT invoice_seq.create_series('')$$);
SELECT expect_error($$SELECT invoice_seq.create_series(repeat('a', 64))$$);
SELECT expect_error($$SELECT invoice_seq.create_series('bad name')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('-leading-dash')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('x''; DROP TABLE t; --')$$);
SELECT invoice_seq.create_series(repeat('a', 63));

-- start_at and reset.
SELECT expect_error($$SELECT invoice_seq.create_series('X', 0)$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', -5)$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', reset => 'weekly')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', reset => 'Yearly')$$);

-- Formats: the number exactly once, known tokens, balanced braces, the
-- period in the display of a series that resets.
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => 'no number')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '{n}-{n:3}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => 'A{n')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => 'A{{n}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => 'A}{n}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '{x}{n}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '{N}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '{n:0}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '{n:21}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '{n:abc}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '{n:}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => '{YYYYYYYYYYYY}{n}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => E'{n}\n')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', format => repeat('x', 126) || '{n}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', reset => 'yearly')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', reset => 'monthly', format => '{YYYY}-{n}')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', reset => 'monthly', format => '{MM}-{n}')$$);
-- the message in full, once
SELECT invoice_seq.create_series('X', reset => 'yearly');

-- stale_after and time_zone.
SELECT expect_error($$SELECT invoice_seq.create_series('X', stale_after => '0')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', stale_after => '-1 hour')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', stale_after => '1 month -40 days')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', stale_after => '101 years')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', time_zone => 'Mars/Olympus_Mons')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', time_zone => '')$$);
SELECT expect_error($$SELECT invoice_seq.create_series('X', time_zone => repeat('z', 300))$$);

-- None of the refusals created anything.
SELECT series FROM invoice_seq.series ORDER BY series;

-- alter_series changes the format and stale_after; NULL keeps the old value.
SELECT invoice_seq.alter_series('INV', format => 'F-{n:4}');
SELECT invoice_seq.alter_series('INV', stale_after => '1 hour');
SELECT invoice_seq.alter_series('INV');
SELECT series, format, stale_after FROM invoice_seq.series WHERE series = 'INV';
SELECT expect_error($$SELECT invoice_seq.alter_series('INV-Y', format => '{n}')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('INV', format => '{n')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('INV', stale_after => '-1 day')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('nope', format => '{n}')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series(NULL)$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('bad name')$$);
SELECT series, format, stale_after FROM invoice_seq.series WHERE series IN ('INV', 'INV-Y')
ORDER BY series;

-- drop_series of a series that never handed out a number.
SELECT invoice_seq.create_series('TMP');
SELECT invoice_seq.drop_series('TMP');
SELECT invoice_seq.drop_series(repeat('a', 63));
SELECT expect_error($$SELECT invoice_seq.drop_series('TMP')$$);
SELECT expect_error($$SELECT invoice_seq.drop_series(NULL)$$);
SELECT expect_error($$SELECT invoice_seq.drop_series('bad name')$$);
SELECT series FROM invoice_seq.series ORDER BY series;

-- Managing series is not open to PUBLIC.
SET ROLE regress_invoice_app;
SELECT expect_error($$SELECT invoice_seq.create_series('APP')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('INV', format => '{n}')$$);
SELECT expect_error($$SELECT invoice_seq.drop_series('INV')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.series_def$$);
SELECT count(*) > 0 AS sees_series FROM invoice_seq.series;
RESET ROLE;

-- A role granted EXECUTE may manage series, without any table privilege.
CREATE ROLE regress_invoice_admin;
GRANT EXECUTE ON FUNCTION invoice_seq.create_series(text, bigint, text, text, interval, text, boolean, regrole),
                          invoice_seq.drop_series(text)
    TO regress_invoice_admin;
GRANT EXECUTE ON FUNCTION expect_error(text) TO regress_invoice_admin;
SET ROLE regress_invoice_admin;
SELECT invoice_seq.create_series('ADMIN');
SELECT invoice_seq.drop_series('ADMIN');
SELECT expect_error($$INSERT INTO invoice_seq.series_def (name, start_at, reset, format, stale_after, time_zone, created_at, created_by) VALUES ('Z', 1, 'never', '{n}', '1 hour', 'UTC', now(), 'x')$$);
RESET ROLE;
