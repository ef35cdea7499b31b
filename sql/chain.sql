--
-- The legal record: the hash chain over the ledger (chain_head,
-- verify_series, export_series), the application's digest, and
-- close_period().  Times, roles and links (which cover the times) are
-- masked in the encodings shown.
--
SELECT invoice_seq.create_series('LR', format => 'LR-{n:4}');
CREATE FUNCTION masked(encoding text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(encoding,
               E'\nat [^\n]*', E'\nat <time>'),
               E'\nactor [^\n]*', E'\nactor <role>'),
               E'\nprev [0-9a-f]{64}', E'\nprev <link of 3>')
$$;

-- One-step numbers, one with the digest of its invoice document.
SELECT invoice_seq.next_invoice_no('LR') FROM generate_series(1, 2);
SELECT invoice_seq.next_invoice_no('LR', sha256('invoice 3'));
-- A reservation holds the chain back: nothing above it is sealed.
SELECT invoice_seq.reserve_invoice_no('LR', 'lr-4');
SELECT invoice_seq.next_invoice_no('LR');
SELECT invoice_no, length(link) AS hex_digits FROM invoice_seq.chain_head('LR');
SELECT * FROM invoice_seq.verify_series('LR');

-- Confirmed with its document's digest, 4 is final, and the chain moves on.
SELECT invoice_seq.confirm_invoice_no('LR', 4, 'EXT-4', NULL, sha256('invoice 4'));
SELECT invoice_no FROM invoice_seq.chain_head('LR');
-- A retry with the same digest is harmless; with another, refused.
SELECT invoice_seq.confirm_invoice_no('LR', 4, 'EXT-4', NULL, sha256('invoice 4'));
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('LR', 4, 'EXT-4', NULL, sha256('forged'))$$);

-- The export: each link is the SHA-256 of its encoding, each encoding
-- names the link before it, and the first names none.
CREATE TEMP TABLE export AS
SELECT (j->>'invoice_no')::bigint AS n, j->>'status' AS status,
       j->>'encoding' AS encoding, j->>'link' AS link
FROM (SELECT line::json AS j FROM invoice_seq.export_series('LR') AS line) x;
SELECT count(*) AS entries,
       bool_and(link = encode(sha256(convert_to(encoding, 'UTF8')), 'hex')) AS links_hash_encodings
FROM export;
SELECT bool_and(substring(e.encoding from E'\nprev ([^\n]*)\n') =
                COALESCE(p.link, '\N')) AS prev_is_link_before
FROM export e LEFT JOIN export p ON p.n = e.n - 1;
SELECT masked(encoding) FROM export WHERE n = 4;
SELECT count(*) AS csv_lines FROM invoice_seq.export_series('LR', format => 'csv');
SELECT invoice_seq.export_series('LR', format => 'csv') LIMIT 1;

-- Errors.
SELECT expect_error($$SELECT * FROM invoice_seq.export_series('LR', NULL, 'xml')$$);
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('LR', '\x0102'::bytea)$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('LR', 4, 'EXT-4', NULL, '\x01'::bytea)$$);
SELECT expect_error($$SELECT * FROM invoice_seq.verify_series('NOPE')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.chain_head(NULL)$$);
SELECT expect_error($$SELECT * FROM invoice_seq.verify_series('LR', '2026')$$);
SET ROLE regress_invoice_app;
SELECT expect_error($$SELECT * FROM invoice_seq.verify_series('LR')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.chain_head('LR')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.export_series('LR')$$);
-- (close_period is not granted to PUBLIC: only the SQLSTATE is shown)
SELECT left(expect_error($$SELECT * FROM invoice_seq.close_period('LR', NULL, 'year end')$$), 5) AS sqlstate;
RESET ROLE;

-- close_period.  Make a free number below a higher one: 6 is taken in a
-- transaction that rolls back, while 7 is reserved by the sequencer.
BEGIN;
SELECT invoice_seq.next_invoice_no('LR');
SELECT invoice_seq.reserve_invoice_no('LR', 'lr-7');
ROLLBACK;
SELECT invoice_no, status FROM invoice_seq.ledger WHERE series = 'LR' AND invoice_no >= 6 ORDER BY 1;
-- refused while numbers are reserved, listing them
SELECT expect_error($$SELECT * FROM invoice_seq.close_period('LR', NULL, 'year end')$$);
SELECT invoice_seq.void_invoice_no('LR', 7, 'integrator rejected it');
SELECT expect_error($$SELECT * FROM invoice_seq.close_period('LR', NULL, NULL)$$);
SELECT expect_error($$SELECT * FROM invoice_seq.close_period('LR', NULL, '  ')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.close_period('NOPE', NULL, 'year end')$$);
-- accepted: the free number 6 is voided with the reason, the chain sealed
SELECT issued, voided, last_no, length(link) AS hex_digits
FROM invoice_seq.close_period('LR', NULL, 'year end');
SELECT invoice_no, status, voided_by, void_reason LIKE 'period closed by %: year end' AS reason_given
FROM invoice_seq.ledger WHERE series = 'LR' AND invoice_no = 6;
SELECT series, period, issued, voided, last_no, reason,
       final_link = (SELECT link FROM invoice_seq.chain_head('LR')) AS final_link_is_head
FROM invoice_seq.closed_periods;
SELECT * FROM invoice_seq.verify_series('LR');
-- a closed period takes no more numbers, confirms or voids
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('LR')$$);
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('LR')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('LR', 4, 'EXT-4')$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('LR', 7, 'late')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.close_period('LR', NULL, 'again')$$);
-- the links and closings are insert-only, like the ledger
SELECT left(expect_error($$DELETE FROM invoice_seq.ledger_link$$), 5) AS sqlstate;
SELECT left(expect_error($$UPDATE invoice_seq.period_close SET reason = 'x'$$), 5) AS sqlstate;
