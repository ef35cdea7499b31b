-- The DBA's part: the extension, the series, and the application's tables
-- (in a Django project: a migration with RunSQL).
CREATE EXTENSION IF NOT EXISTS invoice_seq;
SELECT invoice_seq.create_series('DJ', reset => 'yearly', format => 'DJ-{YYYY}-{n:5}');
SELECT invoice_seq.create_series('CASH', format => 'C-{n:6}');  -- never resets

CREATE TABLE orders (
    id      bigint PRIMARY KEY,
    channel text NOT NULL CHECK (channel IN ('shop', 'counter')),
    amount  numeric(10, 2) NOT NULL,
    attempt int NOT NULL DEFAULT 1,
    defect  text
);
CREATE TABLE invoices (
    order_id     bigint PRIMARY KEY REFERENCES orders,
    series       text NOT NULL,
    period       text NOT NULL DEFAULT '',
    invoice_no   bigint NOT NULL,
    external_ref text,
    UNIQUE (series, period, invoice_no)
);

-- 80 orders: two in three from the shop, one in nine of those defective
INSERT INTO orders (id, channel, amount, defect)
SELECT g, CASE WHEN g % 3 = 0 THEN 'counter' ELSE 'shop' END, 10 * g,
       CASE WHEN g % 9 = 4 THEN 'invalid VAT id' END
FROM generate_series(1, 80) g;
