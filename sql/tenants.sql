--
-- Tenants: a series belongs to a role, and only members of that role may
-- reserve, confirm, void, take one-step numbers, check or see it.  Everyone
-- else gets 42501 and changes nothing.
--
CREATE ROLE regress_tenant_a NOLOGIN;
CREATE ROLE regress_tenant_b NOLOGIN;
CREATE ROLE regress_app_a IN ROLE regress_tenant_a;
CREATE ROLE regress_app_b IN ROLE regress_tenant_b;
CREATE ROLE regress_billing_admin;
GRANT EXECUTE ON FUNCTION
    invoice_seq.create_series(text, bigint, text, text, interval, text, boolean, regrole),
    invoice_seq.alter_series(text, text, interval, boolean, regrole),
    invoice_seq.drop_series(text)
TO regress_billing_admin;
GRANT EXECUTE ON FUNCTION expect_error(text) TO regress_app_a, regress_app_b, regress_billing_admin;

-- The admin manages the series of the tenants it is a member of.
SET ROLE regress_billing_admin;
SELECT expect_error($$SELECT invoice_seq.create_series('A', owner => 'regress_tenant_a')$$);
RESET ROLE;
GRANT regress_tenant_a, regress_tenant_b TO regress_billing_admin;
SET ROLE regress_billing_admin;
SELECT invoice_seq.create_series('A', owner => 'regress_tenant_a');
SELECT invoice_seq.create_series('B', owner => 'regress_tenant_b');
SELECT invoice_seq.create_series('ADMIN-OWN');
SELECT series, owner FROM invoice_seq.series WHERE series IN ('A', 'B', 'ADMIN-OWN') ORDER BY 1;
RESET ROLE;

-- Each tenant's application numbers its own series.
SET ROLE regress_app_a;
SELECT invoice_seq.reserve_invoice_no('A', 'a-1');
SELECT invoice_seq.confirm_invoice_no('A', 1, 'ext-a-1');
SELECT invoice_seq.reserve_invoice_no('A');
SELECT invoice_seq.next_invoice_no('A');
SET ROLE regress_app_b;
SELECT invoice_seq.reserve_invoice_no('B', 'b-1');
SELECT invoice_seq.next_invoice_no('B');
RESET ROLE;
-- a stale reservation of B, which check_series reports to B's members only
SET invoice_seq.test_clock = '2020-01-01 00:00+00';
SELECT invoice_seq.reserve_invoice_no('B');
RESET invoice_seq.test_clock;
CREATE TABLE ledger_before AS SELECT * FROM invoice_seq.ledger_entry;
CREATE TABLE series_before AS SELECT * FROM invoice_seq.series_def;

-- Tenant A's application against tenant B's series: every function, 42501.
SET ROLE regress_app_a;
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('B')$$);
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('B', 'b-1')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.reserve_invoice('B')$$);
SELECT expect_error($$SELECT invoice_seq.next_invoice_no('B')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.next_invoice('B')$$);
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('B', 1, 'stolen')$$);
SELECT expect_error($$SELECT invoice_seq.void_invoice_no('B', 1, 'sabotage')$$);
SELECT expect_error($$SELECT * FROM invoice_seq.check_series('B')$$);
-- management is not theirs either
SELECT expect_error($$SELECT invoice_seq.create_series('A2', owner => 'regress_tenant_a')$$);
SELECT expect_error($$SELECT invoice_seq.alter_series('B', owner => 'regress_tenant_a')$$);
SELECT expect_error($$SELECT invoice_seq.drop_series('B')$$);
-- nor are the tables
SELECT expect_error($$SELECT * FROM invoice_seq.ledger_entry$$);
SELECT expect_error($$SELECT * FROM invoice_seq.series_def$$);
SELECT expect_error($$UPDATE invoice_seq.series_def SET owner = 'regress_tenant_a'$$);
SELECT expect_error($$INSERT INTO invoice_seq.ledger_entry (series_id, period, invoice_no, display_no, status, reserved_at, reserved_by) VALUES (1, '', 999, '999', 'reserved', now(), 'x')$$);
SELECT expect_error($$DELETE FROM invoice_seq.ledger_entry$$);
-- What tenant A sees: its own series and entries only.
SELECT series, owner FROM invoice_seq.series ORDER BY 1;
SELECT series, invoice_no, status FROM invoice_seq.ledger ORDER BY 1, 2;
SELECT DISTINCT series FROM invoice_seq.check_series();
SET ROLE regress_app_b;
SELECT series, invoice_no, problem FROM invoice_seq.check_series();
SELECT series, invoice_no, status FROM invoice_seq.ledger ORDER BY 1, 2;
SELECT expect_error($$SELECT invoice_seq.confirm_invoice_no('A', 2)$$);
RESET ROLE;

-- Nothing changed.
SELECT NOT EXISTS (SELECT * FROM invoice_seq.ledger_entry EXCEPT SELECT * FROM ledger_before)
   AND NOT EXISTS (SELECT * FROM ledger_before EXCEPT SELECT * FROM invoice_seq.ledger_entry)
   AND NOT EXISTS (SELECT * FROM invoice_seq.series_def EXCEPT SELECT * FROM series_before)
   AS unchanged;

-- The admin moves series B to tenant A: now it is A's, and no longer B's.
SET ROLE regress_billing_admin;
SELECT invoice_seq.alter_series('B', owner => 'regress_tenant_a');
SET ROLE regress_app_b;
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('B')$$);
SET ROLE regress_app_a;
SELECT invoice_seq.reserve_invoice_no('B');
RESET ROLE;
-- owner must not be NULL on creation
SELECT expect_error($$SELECT invoice_seq.create_series('C', owner => NULL)$$);

-- DROP ROLE does not know about series: a series whose owner is dropped is
-- usable by superusers only, who can give it to another role.
CREATE ROLE regress_doomed;
SELECT invoice_seq.create_series('D', owner => 'regress_doomed');
DROP ROLE regress_doomed;
SET ROLE regress_app_a;
SELECT count(*) AS sees_d FROM invoice_seq.series WHERE series = 'D';
SELECT expect_error($$SELECT invoice_seq.reserve_invoice_no('D')$$);
RESET ROLE;
SELECT invoice_seq.alter_series('D', owner => 'regress_tenant_a');
SET ROLE regress_app_a;
SELECT invoice_seq.reserve_invoice_no('D');
RESET ROLE;

-- Superusers are members of every role.
SELECT series, count(*) FROM invoice_seq.ledger WHERE series IN ('A', 'B') GROUP BY 1 ORDER BY 1;
DROP TABLE ledger_before, series_before;
