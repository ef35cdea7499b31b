--
-- Ledger rows are written without the executor (src/ledger_write.c): the
-- insert of every number, and the update of a confirm or a void.  Every
-- index of the ledger gets its entries: the extension's own, and a DBA's,
-- partial and expression ones too; unique ones check uniqueness.  amcheck
-- proves it: every heap tuple has its index entries (heapallindexed).
--
CREATE EXTENSION IF NOT EXISTS amcheck;

-- A DBA's indexes: partial, on an expression, and a plain unique one.
CREATE INDEX lw_issued_display ON invoice_seq.ledger_entry (lower(display_no))
    WHERE status = 'issued';
CREATE UNIQUE INDEX lw_display ON invoice_seq.ledger_entry (series_id, period, display_no);

SELECT invoice_seq.create_series('LW', format => 'LW-{n}');
-- 300 one-step numbers, 300 reservations (half of them keyed), then every
-- reservation confirmed or voided: enough updates on the same pages that
-- some cannot be HOT and need index entries of their own.
SELECT count(invoice_seq.next_invoice_no('LW')) FROM generate_series(1, 300);
SELECT count(invoice_seq.reserve_invoice_no('LW', CASE WHEN i % 2 = 0 THEN 'k' || i END))
FROM generate_series(1, 300) i;
SELECT count(CASE WHEN e.invoice_no % 3 = 0
                  THEN invoice_seq.void_invoice_no('LW', e.invoice_no, 'cancelled')::text
                  ELSE invoice_seq.confirm_invoice_no('LW', e.invoice_no, 'ext-' || e.invoice_no)::text END)
FROM invoice_seq.ledger_entry e
JOIN invoice_seq.series_def s ON s.id = e.series_id AND s.name = 'LW'
WHERE e.status = 'reserved';

SELECT e.status, count(*) FROM invoice_seq.ledger_entry e
JOIN invoice_seq.series_def s ON s.id = e.series_id AND s.name = 'LW'
GROUP BY 1 ORDER BY 1;

-- Every index of the ledger holds every row it should.
SELECT c.relname, bt_index_check(c.oid, true) IS NOT NULL AS checked
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'invoice_seq.ledger_entry'::regclass
ORDER BY c.relname;

-- Read through the partial expression index: the same issued entries.
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FROM invoice_seq.ledger_entry
WHERE status = 'issued' AND lower(display_no) LIKE 'lw-%';
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT count(*) FROM invoice_seq.ledger_entry e
JOIN invoice_seq.series_def s ON s.id = e.series_id AND s.name = 'LW'
WHERE e.status = 'issued';

-- A keyed reservation is found through its index: the same number again.
SELECT invoice_seq.reserve_invoice_no('LW', 'k2') =
       (SELECT invoice_no FROM invoice_seq.ledger_entry e
        JOIN invoice_seq.series_def s ON s.id = e.series_id AND s.name = 'LW'
        WHERE e.idempotency_key = 'k2') AS same_number;

-- A unique index that a new entry breaks refuses it with 23505, and the
-- number is not lost: the transaction rolls back, the index with it, and
-- the next number is the one refused.
SELECT invoice_seq.create_series('LW2', format => 'ZZ2-{n}');
BEGIN;
CREATE UNIQUE INDEX lw_one_issued ON invoice_seq.ledger_entry (series_id)
    WHERE display_no LIKE 'ZZ2-%';
SELECT invoice_seq.next_invoice_no('LW2');
SELECT left(expect_error($$SELECT invoice_seq.next_invoice_no('LW2')$$), 5) AS sqlstate;
ROLLBACK;
SELECT invoice_seq.next_invoice_no('LW2');
SELECT invoice_seq.next_invoice_no('LW2');
SELECT count(*) FROM invoice_seq.check_series('LW2');
SELECT count(*) FROM invoice_seq.check_series('LW');
