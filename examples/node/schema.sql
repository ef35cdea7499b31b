-- The DBA's part: the extension, the series, and the application's tables.
CREATE EXTENSION IF NOT EXISTS invoice_seq;
SELECT invoice_seq.create_series('WEB', reset => 'yearly', format => 'W{YY}-{n:5}');

CREATE TABLE orders (id bigint PRIMARY KEY);
CREATE TABLE invoices (
    order_id        bigint PRIMARY KEY REFERENCES orders,
    series          text NOT NULL,
    period          text NOT NULL,
    invoice_no      bigint NOT NULL,
    display_no      text NOT NULL UNIQUE,
    external_ref    text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    UNIQUE (series, period, invoice_no)
);
INSERT INTO orders SELECT generate_series(1, 134);
