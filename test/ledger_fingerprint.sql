-- A digest of the whole ledger (every entry, as the ledger view shows it),
-- to compare two clusters: test/cross_version.
SELECT md5(string_agg(format('%s|%s|%s|%s|%s|%s|%s', series, period, invoice_no,
                             display_no, status, idempotency_key, external_ref),
                      ',' ORDER BY series, period, invoice_no))
FROM invoice_seq.ledger;
