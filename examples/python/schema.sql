-- The DBA's part: the extension, the series, and the application's tables.
CREATE EXTENSION IF NOT EXISTS invoice_seq;
SELECT invoice_seq.create_series('PY', reset => 'yearly', format => 'PY-{YYYY}-{n:6}');

CREATE TABLE orders (
    id      bigint PRIMARY KEY,
    amount  numeric(10, 2) NOT NULL,
    attempt int NOT NULL DEFAULT 1,  -- the idempotency key is id:attempt
    defect  text                     -- what the integrator will reject
);
CREATE TABLE invoices (
    order_id     bigint PRIMARY KEY REFERENCES orders,
    series       text NOT NULL,
    period       text NOT NULL,
    invoice_no   bigint NOT NULL,
    display_no   text NOT NULL UNIQUE,
    external_ref text NOT NULL,
    UNIQUE (series, period, invoice_no)
);

-- 60 orders to invoice, one in nine of them defective
INSERT INTO orders (id, amount, defect)
SELECT g, 10 * g, CASE WHEN g % 9 = 4 THEN 'invalid VAT id' END
FROM generate_series(1, 60) g;
