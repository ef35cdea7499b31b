
# Upgrade from 1.0, the first released version, and from 1.1: their data
# survive ALTER EXTENSION invoice_seq UPDATE, and numbering goes on from it.
#
# Only the current library is installed, and it expects the current schema,
# so the 1.0 ledger is filled the way 1.0 filled it, by rows inserted as the
# extension's owner.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = InvoiceSeqTest::new_node('upgrade');
$node->safe_psql('postgres', q{
	DROP EXTENSION invoice_seq;
	CREATE EXTENSION invoice_seq VERSION '1.0';
	INSERT INTO invoice_seq.series_def
	    (name, start_at, reset, format, stale_after, time_zone, created_at, created_by)
	VALUES ('OLD', 1, 'never', 'OLD-{n}', '15 minutes', 'UTC', now(), 'admin');
	INSERT INTO invoice_seq.ledger_entry
	    (series_id, period, invoice_no, display_no, status, idempotency_key,
	     external_ref, void_reason, reserved_at, reserved_by,
	     confirmed_at, confirmed_by, voided_at, voided_by)
	SELECT s.id, '', n, 'OLD-' || n,
	       CASE WHEN n = 2 THEN 'voided' WHEN n = 3 THEN 'reserved' ELSE 'issued' END,
	       'key-' || n, CASE WHEN n NOT IN (2, 3) THEN 'ext-' || n END,
	       CASE WHEN n = 2 THEN 'rejected' END,
	       now(), 'app',
	       CASE WHEN n NOT IN (2, 3) THEN now() END,
	       CASE WHEN n NOT IN (2, 3) THEN 'app' END,
	       CASE WHEN n = 2 THEN now() END, CASE WHEN n = 2 THEN 'app' END
	FROM invoice_seq.series_def s, generate_series(1, 5) n
	WHERE s.name = 'OLD';
});
my $before = $node->safe_psql('postgres', q{
	SELECT string_agg(format('%s %s %s %s', invoice_no, display_no, status, idempotency_key),
	                  ', ' ORDER BY invoice_no)
	FROM invoice_seq.ledger WHERE series = 'OLD'});

# The new library refuses to work on the old objects, and says what to do.
my ($ret, $out, $err) = $node->psql('postgres', "SELECT invoice_seq.reserve_invoice_no('OLD')");
like($err, qr/library version 1\.5 cannot use extension objects of version 1\.0.*\n.*ALTER EXTENSION invoice_seq UPDATE/,
	'before the update, the API says to run ALTER EXTENSION UPDATE');

$node->safe_psql('postgres', 'ALTER EXTENSION invoice_seq UPDATE');
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'invoice_seq'"),
	'1.5', 'the extension is at 1.5');

is( $node->safe_psql('postgres', q{
		SELECT string_agg(format('%s %s %s %s', invoice_no, display_no, status, idempotency_key),
		                  ', ' ORDER BY invoice_no)
		FROM invoice_seq.ledger WHERE series = 'OLD'}),
	$before, 'the ledger is unchanged');
is( $node->safe_psql('postgres', q{
		SELECT amname FROM pg_am a JOIN pg_class c ON c.relam = a.oid
		WHERE c.oid = 'invoice_seq.ledger_entry'::regclass}),
	'invoice_ledger', 'the ledger now uses the invoice_ledger access method');
($ret, $out, $err) = $node->psql('postgres', 'DELETE FROM invoice_seq.ledger_entry');
like($err, qr/cannot delete from table "ledger_entry"/, 'and refuses DELETE');
is( $node->safe_psql('postgres', q{
		SELECT chronological FROM invoice_seq.series WHERE series = 'OLD'}),
	't', 'existing series are chronological');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM invoice_seq.ledger WHERE series = 'OLD' AND one_step}),
	'0', 'existing entries are two-phase');

is($node->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('OLD', 'key-3')"),
	'3', 'an old idempotency key still finds its number');
is($node->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('OLD')"),
	'6', 'reservations continue after the old numbers');
is($node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('OLD')"),
	'7', 'one-step numbering works');
$node->safe_psql('postgres', q{
	SELECT invoice_seq.confirm_invoice_no('OLD', 3, 'ext-3');
	SELECT invoice_seq.confirm_invoice_no('OLD', 6, 'ext-6');
	SELECT invoice_seq.create_series('NEW', chronological => false);
});
is($node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('NEW')"),
	'1', 'new series can be created');
is($node->safe_psql('postgres', "SELECT count(*) FROM invoice_seq.check_series()"),
	'0', 'check_series is empty');

# From 1.1: a one-step number that 1.1 left 'reserved' was never issued (its
# transaction did not commit); 1.2 hands out only numbers without a row, so
# the update voids it, with the reason.  Everything else is kept.
$node->safe_psql('postgres', 'CREATE DATABASE v11');
$node->safe_psql('v11', q{
	CREATE EXTENSION invoice_seq VERSION '1.1';
	INSERT INTO invoice_seq.series_def
	    (name, start_at, reset, format, stale_after, time_zone, created_at, created_by,
	     chronological, owner)
	VALUES ('S11', 1, 'never', '{n}', '15 minutes', 'UTC', now(), 'admin', true,
	        current_user::regrole);
	INSERT INTO invoice_seq.ledger_entry
	    (series_id, period, invoice_no, display_no, status, idempotency_key,
	     reserved_at, reserved_by, confirmed_at, confirmed_by, holder_xid)
	SELECT s.id, '', n, n::text,
	       CASE WHEN n = 1 THEN 'issued' ELSE 'reserved' END,
	       CASE WHEN n = 3 THEN 'key-3' END,
	       now(), 'app',
	       CASE WHEN n = 1 THEN now() END, CASE WHEN n = 1 THEN 'app' END,
	       CASE WHEN n IN (1, 2) THEN (100 + n)::text::xid8 END
	FROM invoice_seq.series_def s, generate_series(1, 3) n;
});
$node->safe_psql('v11', 'ALTER EXTENSION invoice_seq UPDATE');
is( $node->safe_psql('v11', q{
		SELECT string_agg(format('%s %s %s', invoice_no, status, one_step), ', '
		                  ORDER BY invoice_no)
		FROM invoice_seq.ledger WHERE series = 'S11'}),
	'1 issued t, 2 voided t, 3 reserved f',
	'from 1.1: the one-step number never issued is voided, the rest is kept');
like( $node->safe_psql('v11', q{
		SELECT voided_by || ': ' || void_reason FROM invoice_seq.ledger
		WHERE series = 'S11' AND invoice_no = 2}),
	qr/^invoice_seq: not issued: .*update to invoice_seq 1\.2$/,
	'from 1.1: the void says why and who');
is( $node->safe_psql('v11',
		"SELECT to_regclass('invoice_seq.ledger_entry_held') IS NULL"),
	't', 'from 1.1: the index of held one-step numbers is gone');
is( $node->safe_psql('v11', q{
		SELECT invoice_seq.confirm_invoice_no('S11', 3, 'ext-3'),
		       invoice_seq.next_invoice_no('S11')}),
	'3|4', 'from 1.1: confirm returns its number, and numbering continues');

# From 1.2: stats gains a row per database, start_sequencer() appears, and
# this database (not the one 1.2's invoice_seq.database named) reserves
# inside a transaction block with a sequencer of its own.
$node->safe_psql('postgres', 'CREATE DATABASE v12');
$node->safe_psql('v12', q{
	CREATE EXTENSION invoice_seq VERSION '1.2';
	INSERT INTO invoice_seq.series_def
	    (name, start_at, reset, format, stale_after, time_zone, created_at, created_by,
	     chronological, owner)
	VALUES ('S12', 1, 'never', '{n}', '15 minutes', 'UTC', now(), 'admin', true,
	        current_user::regrole);
	INSERT INTO invoice_seq.ledger_entry
	    (series_id, period, invoice_no, display_no, status, idempotency_key,
	     reserved_at, reserved_by)
	SELECT s.id, '', 1, '1', 'reserved', 'key-1', now(), 'app'
	FROM invoice_seq.series_def s;
});
($ret, $out, $err) = $node->psql('v12', 'SELECT * FROM invoice_seq.stats');
like($err, qr/library version 1\.5 cannot use extension objects of version 1\.2/,
	'from 1.2: before the update, stats says to run ALTER EXTENSION UPDATE');
# An event trigger that tries to drop the ledger (an invoice_ledger table
# since 1.1) while the update scripts run: the scripts may change the
# record's tables, code they set off may not.
$node->safe_psql('v12', q{
	CREATE TABLE public.drop_attempts (state text);
	CREATE FUNCTION public.try_drop() RETURNS event_trigger LANGUAGE plpgsql AS $$
	BEGIN
	    BEGIN
	        DROP TABLE invoice_seq.ledger_entry CASCADE;
	        INSERT INTO public.drop_attempts VALUES ('dropped');
	    EXCEPTION WHEN OTHERS THEN
	        INSERT INTO public.drop_attempts VALUES (SQLSTATE);
	    END;
	END $$;
	CREATE EVENT TRIGGER try_drop ON ddl_command_end EXECUTE FUNCTION public.try_drop();
});
$node->safe_psql('v12', 'ALTER EXTENSION invoice_seq UPDATE');
$node->safe_psql('v12', 'DROP EVENT TRIGGER try_drop');
is($node->safe_psql('v12', q{
		SELECT count(*) FILTER (WHERE state = 'dropped') || ' ' || (count(*) FILTER (WHERE state = '42501') > 0)
		FROM public.drop_attempts}),
	'0 true', 'from 1.2: an event trigger firing inside the update scripts cannot drop the ledger (42501)');
is( $node->safe_psql('v12',
		"BEGIN; SELECT invoice_seq.reserve_invoice_no('S12', 'key-1'),"
		  . " invoice_seq.reserve_invoice_no('S12', 'key-2'); COMMIT"),
	'1|2', 'from 1.2: keys are found, and the database reserves inside a block');
is( $node->safe_psql('v12',
		"SELECT requests, sequencer_pid IS NOT NULL FROM invoice_seq.stats WHERE database = 'v12'"),
	'2|t', 'from 1.2: stats shows this database on a row of its own');
is( $node->safe_psql('v12',
		"SELECT invoice_seq.start_sequencer() = sequencer_pid FROM invoice_seq.stats"
		  . " WHERE database = 'v12'"),
	't', 'from 1.2: start_sequencer() returns the running sequencer');

# The chain covers what was there before the update, once it is final.
$node->safe_psql('v12', "SELECT invoice_seq.confirm_invoice_no('S12', 1, 'EXT-1')");
is($node->safe_psql('v12', "SELECT invoice_no FROM invoice_seq.chain_head('S12')"),
	'1', 'after the update: entries made before it are sealed once final');
is($node->safe_psql('v12', "SELECT count(*) FROM invoice_seq.verify_series('S12')"),
	'0', 'after the update: the chain verifies');

done_testing();
