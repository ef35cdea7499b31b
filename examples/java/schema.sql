-- The DBA's part: the extension, the series, and the application's tables.
CREATE EXTENSION IF NOT EXISTS invoice_seq;
SELECT invoice_seq.create_series('JV', reset => 'monthly', format => 'JV{YYYY}{MM}-{n:4}');

CREATE TABLE orders (
    id       bigint PRIMARY KEY,
    amount   numeric(10, 2) NOT NULL,
    defect   text,  -- makes the invoice line fail its CHECK
    invoiced boolean NOT NULL DEFAULT false
);
CREATE TABLE invoices (
    order_id   bigint PRIMARY KEY REFERENCES orders,
    series     text NOT NULL,
    period     text NOT NULL,
    invoice_no bigint NOT NULL,
    display_no text NOT NULL UNIQUE,
    UNIQUE (series, period, invoice_no)
);
CREATE TABLE invoice_lines (
    order_id bigint NOT NULL REFERENCES invoices,
    text     text NOT NULL,
    amount   numeric(10, 2) NOT NULL CHECK (amount > 0)
);

-- 120 orders, one in nine defective
INSERT INTO orders (id, amount, defect)
SELECT g, 10 * g, CASE WHEN g % 9 = 4 THEN 'negative line' END
FROM generate_series(1, 120) g;
