--
-- Bad input: every kind a caller can send gets a clear error with the
-- right SQLSTATE, and the ledger and the series are byte-identical before
-- and after the whole battery.
--
SELECT invoice_seq.create_series('BAD', reset => 'yearly', format => 'B-{YYYY}-{n}');
SELECT invoice_seq.create_series('LAST', start_at => 9223372036854775806);
SELECT invoice_seq.reserve_invoice_no('BAD', 'bad-1');
CREATE FUNCTION fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(coalesce((SELECT string_agg(e::text, '|' ORDER BY series_id, period, invoice_no)
                         FROM invoice_seq.ledger_entry e), '')
               || coalesce((SELECT string_agg(s::text, '|' ORDER BY id)
                            FROM invoice_seq.series_def s), ''))
$$;
SELECT fingerprint() AS before \gset

SELECT stmt, expect_error(stmt) FROM (VALUES
    -- NULLs
    ($$SELECT invoice_seq.reserve_invoice_no(NULL)$$),
    ($$SELECT invoice_seq.next_invoice_no(NULL)$$),
    ($$SELECT invoice_seq.confirm_invoice_no(NULL, 1)$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', NULL)$$),
    ($$SELECT invoice_seq.void_invoice_no('BAD', 1, NULL, '2026')$$),
    ($$SELECT invoice_seq.create_series(NULL)$$),
    ($$SELECT invoice_seq.create_series('N', start_at => NULL)$$),
    ($$SELECT invoice_seq.create_series('N', format => NULL)$$),
    ($$SELECT invoice_seq.create_series('N', stale_after => NULL)$$),
    ($$SELECT invoice_seq.create_series('N', time_zone => NULL)$$),
    ($$SELECT invoice_seq.drop_series(NULL)$$),
    -- empty strings
    ($$SELECT invoice_seq.reserve_invoice_no('')$$),
    ($$SELECT invoice_seq.reserve_invoice_no('BAD', '')$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 1, '', '2026')$$),
    ($$SELECT invoice_seq.void_invoice_no('BAD', 1, '', '2026')$$),
    ($$SELECT invoice_seq.void_invoice_no('BAD', 1, '   ', '2026')$$),
    ($$SELECT invoice_seq.create_series('N', format => '')$$),
    ($$SELECT invoice_seq.create_series('N', time_zone => '')$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 1, 'x', '')$$),
    -- 1 MB strings
    ($$SELECT invoice_seq.reserve_invoice_no(repeat('s', 1048576))$$),
    ($$SELECT invoice_seq.reserve_invoice_no('BAD', repeat('k', 1048576))$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 1, repeat('r', 1048576), '2026')$$),
    ($$SELECT invoice_seq.void_invoice_no('BAD', 1, repeat('v', 1048576), '2026')$$),
    ($$SELECT invoice_seq.create_series('N', format => repeat('{n}', 349526))$$),
    ($$SELECT invoice_seq.create_series('N', time_zone => repeat('Z', 1048576))$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 1, 'x', repeat('2', 1048576))$$),
    -- invalid UTF-8 cannot reach the functions: the server refuses it first
    ($$SELECT invoice_seq.reserve_invoice_no(convert_from('\xc328'::bytea, 'UTF8'))$$),
    ($$SELECT invoice_seq.reserve_invoice_no('BAD', convert_from('\xff'::bytea, 'UTF8'))$$),
    -- names that are not names
    ($$SELECT invoice_seq.reserve_invoice_no('bad name')$$),
    ($$SELECT invoice_seq.reserve_invoice_no(E'BAD\n')$$),
    ($$SELECT invoice_seq.create_series('x;y')$$),
    -- numbers <= 0 and at the end of bigint
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 0, 'x', '2026')$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', -1, 'x', '2026')$$),
    ($$SELECT invoice_seq.void_invoice_no('BAD', -9223372036854775808, 'x', '2026')$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 9223372036854775807, 'x', '2026')$$),
    ($$SELECT invoice_seq.create_series('N', start_at => 0)$$),
    ($$SELECT invoice_seq.create_series('N', start_at => -5)$$),
    -- periods
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 1, 'x')$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 1, 'x', '26')$$),
    ($$SELECT invoice_seq.confirm_invoice_no('BAD', 1, 'x', '2026-13')$$),
    -- intervals
    ($$SELECT invoice_seq.create_series('N', stale_after => '-1 hour')$$),
    ($$SELECT invoice_seq.create_series('N', stale_after => '0')$$),
    ($$SELECT invoice_seq.create_series('N', stale_after => '1000 years')$$),
    ($$SELECT invoice_seq.alter_series('BAD', stale_after => '-1 second')$$),
    -- formats: unknown, unbalanced, repeated or missing tokens
    ($$SELECT invoice_seq.create_series('N', format => '{x}')$$),
    ($$SELECT invoice_seq.create_series('N', format => '{n')$$),
    ($$SELECT invoice_seq.create_series('N', format => 'n}')$$),
    ($$SELECT invoice_seq.create_series('N', format => '{n:0}')$$),
    ($$SELECT invoice_seq.create_series('N', format => '{n:21}')$$),
    ($$SELECT invoice_seq.create_series('N', format => '{n}{n}')$$),
    ($$SELECT invoice_seq.create_series('N', format => 'no number')$$),
    ($$SELECT invoice_seq.create_series('N', reset => 'yearly', format => '{n}')$$),
    ($$SELECT invoice_seq.alter_series('BAD', format => '{n:')$$),
    -- other values
    ($$SELECT invoice_seq.create_series('N', reset => 'weekly')$$),
    ($$SELECT invoice_seq.create_series('N', time_zone => 'Mars/Olympus')$$),
    ($$SELECT invoice_seq.create_series('BAD')$$)
) AS battery(stmt);

SELECT fingerprint() = :'before' AS byte_identical;

-- A series at the end of bigint hands out its last numbers, then says so;
-- it never wraps.
SELECT invoice_seq.reserve_invoice_no('LAST');
SELECT invoice_seq.next_invoice_no('LAST');
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('LAST')$$);
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('LAST')$$);
SELECT invoice_no FROM invoice_seq.ledger WHERE series = 'LAST' ORDER BY 1;
DROP FUNCTION fingerprint();
