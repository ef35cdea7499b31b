
# The invoice_ledger access method across a dump and restore, and on a
# streaming standby.
#
# A database with a ledger (two-phase and one-step numbers) and a user table
# USING invoice_ledger is dumped with pg_dump and restored into a new
# cluster: the ledger and the table come back, still in the access method,
# and numbering continues after the highest number, so none is handed out
# twice.  A standby replays the same ledger.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = InvoiceSeqTest::new_node('primary', init => { allows_streaming => 1 });
$primary->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('S', reset => 'yearly', format => 'S-{YYYY}-{n}');
	SELECT invoice_seq.reserve_invoice_no('S', 'key-' || n) FROM generate_series(1, 20) n;
	SELECT invoice_seq.confirm_invoice_no('S', n, 'ext-' || n, period => to_char(now(), 'YYYY'))
	FROM generate_series(1, 15) n;
	SELECT invoice_seq.void_invoice_no('S', 16, 'rejected', period => to_char(now(), 'YYYY'));
	SELECT invoice_seq.next_invoice_no('S') FROM generate_series(1, 10);
	CREATE TABLE my_issued_invoices (no bigint PRIMARY KEY, body text) USING invoice_ledger;
	INSERT INTO my_issued_invoices SELECT n, repeat('x', 5000) || n FROM generate_series(1, 50) n;
});

# A standby, started from a backup, that then streams more numbers.
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres',
	"SELECT invoice_seq.next_invoice_no('S') FROM generate_series(1, 5)");
$primary->wait_for_catchup($standby);

my $ledger_query = q{
	SELECT string_agg(format('%s/%s %s %s %s', period, invoice_no, display_no, status,
	                         coalesce(idempotency_key, '-')), ', ' ORDER BY period, invoice_no)
	FROM invoice_seq.ledger WHERE series = 'S'};
my $ledger = $primary->safe_psql('postgres', $ledger_query);
is($standby->safe_psql('postgres', $ledger_query), $ledger,
	'the standby replays the ledger');
is( $standby->safe_psql('postgres',
		'SELECT count(*), sum(length(body)) FROM my_issued_invoices'),
	$primary->safe_psql('postgres',
		'SELECT count(*), sum(length(body)) FROM my_issued_invoices'),
	'the standby replays the user table, TOAST included');
my ($ret, $out, $err) = $standby->psql('postgres', 'SELECT invoice_seq.reserve_invoice_no(\'S\')');
like($err, qr/during recovery/, 'the standby refuses to reserve');

# Dump, and restore into database "restored" of a new cluster.
my $dump = "$PostgreSQL::Test::Utils::tmp_check/ledger.dump";
$primary->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $primary->connstr('postgres') ],
	'pg_dump');
my $max = $primary->safe_psql('postgres',
	"SELECT max(invoice_no) FROM invoice_seq.ledger WHERE series = 'S'");

my $restored = PostgreSQL::Test::Cluster->new('restored');
$restored->init;
$restored->append_conf('postgresql.conf', q{
shared_preload_libraries = 'invoice_seq'
});
$restored->start;
$restored->safe_psql('postgres', 'CREATE DATABASE restored');
$restored->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $restored->connstr('restored'), $dump ],
	'pg_restore');
InvoiceSeqTest::wait_for_sequencer($restored, undef, 'restored');

is($restored->safe_psql('restored', $ledger_query), $ledger,
	'the ledger is restored as it was');
is( $restored->safe_psql('restored', q{
		SELECT string_agg(c.relname || ' ' || a.amname, ', ' ORDER BY c.relname)
		FROM pg_class c JOIN pg_am a ON a.oid = c.relam
		WHERE c.relname IN ('ledger_entry', 'my_issued_invoices')}),
	'ledger_entry invoice_ledger, my_issued_invoices invoice_ledger',
	'both tables are restored into the invoice_ledger access method');
is( $restored->safe_psql('restored',
		'SELECT count(*), sum(length(body)) FROM my_issued_invoices'),
	$primary->safe_psql('postgres',
		'SELECT count(*), sum(length(body)) FROM my_issued_invoices'),
	'the user table is restored');

is($restored->safe_psql('restored', "SELECT invoice_seq.reserve_invoice_no('S')"),
	$max + 1, 'reserving continues after the highest number');
is($restored->safe_psql('restored', "SELECT invoice_seq.next_invoice_no('S')"),
	$max + 2, 'so does one-step numbering');
is($restored->safe_psql('restored', "SELECT invoice_seq.reserve_invoice_no('S', 'key-3')"),
	'3', 'an idempotency key still finds its number');
is( $restored->safe_psql('restored', q{
		SELECT count(*) = count(DISTINCT (period, invoice_no)) FROM invoice_seq.ledger}),
	't', 'no number is handed out twice');
is($restored->safe_psql('restored', 'SELECT count(*) FROM invoice_seq.check_series()'),
	'0', 'check_series is empty');
($ret, $out, $err) = $restored->psql('restored', 'DELETE FROM my_issued_invoices');
like($err, qr/cannot delete from table "my_issued_invoices"/,
	'the restored user table still refuses DELETE');
($ret, $out, $err) = $restored->psql('restored', 'DELETE FROM invoice_seq.ledger_entry');
like($err, qr/cannot delete from table "ledger_entry"/,
	'the restored ledger still refuses DELETE');

done_testing();
