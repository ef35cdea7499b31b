--
-- Set-up shared by the other regression tests.
--
CREATE EXTENSION invoice_seq;

-- Run a statement and report its SQLSTATE and message, or 'ok'.  The tests
-- use it to show the error code of every refusal next to its message.
CREATE FUNCTION expect_error(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
    RETURN state || ': ' || message;
END
$$;

-- An application role, with no privileges of its own.
CREATE ROLE regress_invoice_app;
GRANT USAGE ON SCHEMA public TO regress_invoice_app;
GRANT EXECUTE ON FUNCTION expect_error(text) TO regress_invoice_app;
