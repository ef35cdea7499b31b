-- The DBA's part: one role per tenant, owning the tenant's series; the
-- applications log in as members of their tenant's role.
CREATE EXTENSION IF NOT EXISTS invoice_seq;

CREATE ROLE tenant_a NOLOGIN;
CREATE ROLE tenant_b NOLOGIN;
CREATE ROLE tenant_c NOLOGIN;
CREATE ROLE app_a LOGIN PASSWORD 'app_a' IN ROLE tenant_a;
CREATE ROLE app_b LOGIN PASSWORD 'app_b' IN ROLE tenant_b;
CREATE ROLE app_c LOGIN PASSWORD 'app_c' IN ROLE tenant_c;

SELECT invoice_seq.create_series('A-INV', format => 'A-{n:6}', owner => 'tenant_a');
SELECT invoice_seq.create_series('B-INV', format => 'B-{YYYY}-{n:4}', reset => 'yearly', owner => 'tenant_b');
SELECT invoice_seq.create_series('C-INV', start_at => 1000, format => 'C{n}', owner => 'tenant_c');

CREATE TABLE tenants (name text PRIMARY KEY, series text NOT NULL);
INSERT INTO tenants VALUES ('a', 'A-INV'), ('b', 'B-INV'), ('c', 'C-INV');

CREATE TABLE orders (
    id      bigint PRIMARY KEY,
    tenant  text NOT NULL REFERENCES tenants,
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
-- (a real application would also keep tenants apart here, with row level
-- security; the series are kept apart by invoice_seq)
GRANT SELECT ON tenants TO tenant_a, tenant_b, tenant_c;
GRANT SELECT, UPDATE ON orders TO tenant_a, tenant_b, tenant_c;
GRANT SELECT, INSERT ON invoices TO tenant_a, tenant_b, tenant_c;

-- 90 orders, spread over the tenants; one in seven defective
INSERT INTO orders (id, tenant, amount, defect)
SELECT g, (ARRAY['a', 'b', 'c'])[1 + g % 3], 10 * g,
       CASE WHEN g % 7 = 4 THEN 'invalid VAT id' END
FROM generate_series(1, 90) g;
