
# Every database of the cluster numbers, with nothing to configure.  Each
# has a sequencer of its own, started by the first reservation made inside
# a transaction block there, and gone when idle, when the extension is
# dropped, or when a command needs the database alone.
#
#  1. Three databases number at once under pgbench (one-step, autocommit
#     reserve, in-block reserve), while a fourth creates the extension.
#  2. A database whose sequencer is idle is dropped without FORCE; one
#     under load is dropped WITH (FORCE) and the others go on.
#  3. The extension in template1: CREATE DATABASE from it, and the new
#     database numbers from 1.
#  4. pg_terminate_backend of one database's sequencer in a batch.
#  5. kill -9 of one database's sequencer under load.
#  6. More databases than invoice_seq.max_databases; idle sequencers exit.
#  7. DROP EXTENSION stops that database's sequencer.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = InvoiceSeqTest::new_node('databases', conf => qq{
max_worker_processes = 16
invoice_seq.max_databases = 5
max_connections = 80
});

# A database with the extension, a series S and the application's table.
sub new_database
{
	my ($name, %opts) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $name" .
		($opts{template} ? " TEMPLATE $opts{template}" : ''));
	return if $opts{template};
	$node->safe_psql($name, q{
		CREATE EXTENSION invoice_seq;
		SELECT invoice_seq.create_series('S');
		CREATE TABLE app_invoice (no bigint PRIMARY KEY, path text NOT NULL);
	});
	return;
}

# The pgbench script: each transaction numbers one invoice by one of the
# three paths, and records it in app_invoice in the same transaction as
# its issue.
my $script = "$PostgreSQL::Test::Utils::tmp_check/three_paths.sql";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set path random(1, 3)
\if :path = 1
INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('S'), 'one-step');
\elif :path = 2
SELECT invoice_seq.reserve_invoice_no('S', gen_random_uuid()::text) AS no \gset
INSERT INTO app_invoice VALUES (invoice_seq.confirm_invoice_no('S', :no), 'autocommit');
\else
BEGIN;
SELECT invoice_seq.reserve_invoice_no('S', gen_random_uuid()::text) AS no \gset
COMMIT;
INSERT INTO app_invoice VALUES (invoice_seq.confirm_invoice_no('S', :no), 'in-block');
\endif
});

# Start pgbench on a database: $clients clients, $what = ['-t', N] or
# ['-T', seconds].
sub start_pgbench
{
	my ($dbname, $clients, @what) = @_;
	my %p = (out => '', err => '');
	$p{handle} = IPC::Run::start(
		[
			'pgbench', '-n', '-c', $clients, '-j', $clients, @what,
			'-f', $script, '-h', $node->host, '-p', $node->port, $dbname
		],
		'>', \$p{out}, '2>', \$p{err});
	return \%p;
}

# Dense, no duplicates, nothing left reserved, check_series empty, and
# exactly the issued numbers in app_invoice.
sub check_database
{
	my ($dbname, $when) = @_;
	my ($count, $distinct, $max, $reserved) = split /\|/,
	  $node->safe_psql($dbname, q{
		SELECT count(*), count(DISTINCT invoice_no), coalesce(max(invoice_no), 0),
		       count(*) FILTER (WHERE status = 'reserved')
		FROM invoice_seq.ledger WHERE series = 'S' AND status <> 'recyclable'});
	ok($count > 0 && $count == $max && $distinct == $count,
		"$when: $dbname is dense and has no duplicate ($count numbers)");
	is($reserved, '0', "$when: $dbname has no number left reserved");
	is($node->safe_psql($dbname, "SELECT count(*) FROM invoice_seq.check_series('S')"),
		'0', "$when: check_series of $dbname is empty");
	local $InvoiceSeqTest::db = $dbname;
	is(InvoiceSeqTest::issued_mismatches($node, 'S'), '0',
		"$when: the issued numbers of $dbname are exactly its application's rows");
	return;
}

sub paths_used
{
	my ($dbname) = @_;
	return $node->safe_psql($dbname,
		'SELECT string_agg(DISTINCT path, \',\' ORDER BY path) FROM app_invoice');
}

# 1. Three databases at once, and CREATE EXTENSION in a fourth meanwhile.
new_database($_) for qw(d1 d2 d3);
my @load = map { start_pgbench($_, 3, '-t', 150) } qw(d1 d2 d3);
new_database('d4');
is($node->safe_psql('d4', "BEGIN; SELECT invoice_seq.reserve_invoice_no('S'); COMMIT"),
	'1', 'a database given the extension under load reserves in a block at once');
for my $p (@load)
{
	$p->{handle}->finish;
	is($p->{handle}->result(0), 0, 'pgbench ran without a failed transaction')
	  or diag $p->{err};
}
for my $d (qw(d1 d2 d3))
{
	is(paths_used($d), 'autocommit,in-block,one-step', "$d used the three paths");
	check_database($d, 'three databases at once');
	isnt(InvoiceSeqTest::sequencer_pid($node, $d), '', "$d has a sequencer of its own");
}
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM invoice_seq.stats
		WHERE database IN ('d1', 'd2', 'd3') AND requests > 0 AND sequencer_pid IS NOT NULL}),
	'3', 'stats shows each database on a row of its own');

# 2. d4's sequencer is idle: a plain DROP DATABASE does not wait for it.
isnt(InvoiceSeqTest::sequencer_pid($node, 'd4'), '', 'd4 has a sequencer');
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE d4');
is($ret, 0, 'DROP DATABASE of a database whose sequencer runs goes through')
  or diag $err;

# d3 under load, dropped WITH (FORCE); d1 and d2 go on.
@load = map { start_pgbench($_, 3, '-T', 6) } qw(d1 d2 d3);
$node->poll_query_until('d3', 'SELECT count(*) >= 30 FROM app_invoice')
  or die 'no load on d3';
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE d3 WITH (FORCE)');
is($ret, 0, 'DROP DATABASE WITH (FORCE) of a database under load goes through')
  or diag $err;
$_->{handle}->finish for @load;
is($load[0]{handle}->result(0), 0, 'd1 ran on without a failed transaction')
  or diag $load[0]{err};
is($load[1]{handle}->result(0), 0, 'd2 ran on without a failed transaction')
  or diag $load[1]{err};
check_database($_, 'after dropping d3') for qw(d1 d2);
is($node->safe_psql('postgres', "SELECT count(*) FROM invoice_seq.stats WHERE database = 'd3'"),
	'0', 'the dropped database is gone from stats');

# 3. The extension in template1, its sequencer running: CREATE DATABASE
# from it goes through, and the new database numbers from 1.
$node->safe_psql('template1',
	"CREATE EXTENSION invoice_seq; SELECT invoice_seq.create_series('S')");
$node->safe_psql('template1', 'SELECT invoice_seq.start_sequencer()');
new_database('d5', template => 'template1');
is( $node->safe_psql('d5',
		"BEGIN; SELECT invoice_seq.reserve_invoice_no('S'); COMMIT;"
		  . " SELECT invoice_seq.next_invoice_no('S')"),
	"1\n2", 'a database created from template1 numbers from 1');
$node->safe_psql('template1', 'DROP EXTENSION invoice_seq');

# 4. d1's sequencer is terminated in the middle of a batch (a lock on its
# ledger holds it there).  Its client is told nothing was reserved; d2's
# sequencer is not disturbed; d1's comes back at the next request.
my $d2_pid = InvoiceSeqTest::sequencer_pid($node, 'd2');
my $admin = $node->background_psql('d1');
$admin->query_safe('BEGIN; LOCK TABLE invoice_seq.ledger_entry IN ACCESS EXCLUSIVE MODE');
my %w = (out => '', err => '');
$w{handle} = IPC::Run::start(
	[
		'psql', '-X', '-A', '-t', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('d1'),
		'-c', "BEGIN; SELECT invoice_seq.reserve_invoice_no('S', 'k-term'); COMMIT"
	],
	'>', \$w{out}, '2>', \$w{err});
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'invoice_seq sequencer' AND datname = 'd1'
	  AND wait_event = 'relation'})
  or die "d1's sequencer never waited for the lock";
my $d1_pid = InvoiceSeqTest::sequencer_pid($node, 'd1');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($d1_pid)");
$w{handle}->finish;
like($w{err}, qr/ERROR:  55000: invoice_seq sequencer exited before reserving a number/,
	'terminated sequencer: its waiting client gets 55000');
like($w{err}, qr/HINT:  Retry/, 'terminated sequencer: the hint says to retry');
$admin->query_safe('ROLLBACK');
$admin->quit;
is( $node->safe_psql('d2',
		"BEGIN; SELECT count(invoice_seq.reserve_invoice_no('S')); COMMIT"),
	'1', 'another database reserves meanwhile');
is(InvoiceSeqTest::sequencer_pid($node, 'd2'), $d2_pid,
	"the other database's sequencer was not disturbed");
my $again = $node->safe_psql('d1',
	"BEGIN; SELECT invoice_seq.reserve_invoice_no('S', 'k-term'); COMMIT");
ok($again > 0, 'the retry with the key is served by a new sequencer');
isnt(InvoiceSeqTest::sequencer_pid($node, 'd1'), $d1_pid, 'd1 has a new sequencer');
$node->safe_psql('d1', "SELECT invoice_seq.confirm_invoice_no('S', $again)");
$node->safe_psql('d2', q{
	SELECT invoice_seq.void_invoice_no('S', invoice_no, 'test: reserved by hand')
	FROM invoice_seq.ledger WHERE series = 'S' AND status = 'reserved'});

# 5. kill -9 of d1's sequencer while d1 and d2 are under load: the cluster
# goes through crash recovery; then each database is dense and every
# answered number is in its ledger.
# Enough requests that no client runs out before the kill: an autocommit
# client answers thousands a second (one did finish 5,000 first in CI).
my %clients;
my $kill_requests = 20000;
$node->safe_psql($_, "SELECT invoice_seq.create_series('K')") for qw(d1 d2);
for my $d (qw(d1 d2))
{
	local $InvoiceSeqTest::db = $d;
	$clients{$d} = [ InvoiceSeqTest::start_clients($node, 'K', 4, $kill_requests,
		keyed => 1, tag => "kill-$d") ];
}
{
	local $InvoiceSeqTest::db = 'd1';
	InvoiceSeqTest::wait_for_entries($node, 'K', 100);
}
$d1_pid = InvoiceSeqTest::sequencer_pid($node, 'd1');
$node->safe_psql('d1', 'SELECT 1');    # the node is up
kill 'KILL', $d1_pid;
InvoiceSeqTest::finish_clients(@{ $clients{$_} }) for qw(d1 d2);
InvoiceSeqTest::wait_for_sequencer($node, $d1_pid, 'd1');
ok($node->log_contains(qr/\(PID $d1_pid\) was terminated by signal 9/),
	"kill -9 of d1's sequencer: the server went through crash recovery");
for my $d (qw(d1 d2))
{
	local $InvoiceSeqTest::db = $d;
	my $answers = InvoiceSeqTest::answers(@{ $clients{$d} });
	ok(@$answers < 4 * $kill_requests, "kill -9, $d: it struck while its clients were running");
	push @$answers,
	  InvoiceSeqTest::check_key_retries($node, 'K', $answers, "kill -9, $d", $kill_requests);
	my (undef, $lost) =
	  InvoiceSeqTest::check_invariants($node, 'K', $answers, "kill -9, $d");
	is($lost, 0, "kill -9, $d: no answered number was lost");
}

# 6. invoice_seq.max_databases = 5.  Sequencers run in postgres, d1, d2 and
# d5; a sixth database starts one; a seventh is refused with 53400 while
# every entry is busy, and the others keep working.  Once the idle
# sequencers exit, the seventh is served.
$node->safe_psql('postgres', "ALTER SYSTEM SET invoice_seq.idle_timeout = 0");
$node->reload;
new_database($_) for qw(d6 d7);
$node->safe_psql($_, 'SELECT invoice_seq.start_sequencer()') for qw(postgres d1 d2 d5 d6);
($ret, $out, $err) = $node->psql('d7',
	"\\set VERBOSITY verbose\nBEGIN; SELECT invoice_seq.reserve_invoice_no('S'); COMMIT");
like($err, qr/ERROR:  53400: invoice_seq serves at most 5 databases at once/,
	'past invoice_seq.max_databases: 53400');
like($err, qr/HINT:  Retry later, or raise invoice_seq.max_databases/,
	'past invoice_seq.max_databases: the hint says what to do');
is($node->safe_psql('d7', "SELECT count(*) FROM invoice_seq.ledger"), '0',
	'past invoice_seq.max_databases: nothing reserved');
is($node->safe_psql('d7', "SELECT invoice_seq.next_invoice_no('S')"), '1',
	'past invoice_seq.max_databases: one-step numbers need no sequencer');
is( $node->safe_psql('d6',
		"BEGIN; SELECT invoice_seq.reserve_invoice_no('S'); COMMIT"),
	'1', 'past invoice_seq.max_databases: the databases within it keep working');

$node->safe_psql('postgres', "ALTER SYSTEM SET invoice_seq.idle_timeout = '1s'");
$node->reload;
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'invoice_seq sequencer'})
  or die 'idle sequencers did not exit';
pass('idle sequencers exit after invoice_seq.idle_timeout');
is( $node->safe_psql('d7',
		"BEGIN; SELECT invoice_seq.reserve_invoice_no('S'); COMMIT"),
	'2', 'once idle sequencers have left, the seventh database is served');
is( $node->safe_psql('d6',
		"BEGIN; SELECT invoice_seq.reserve_invoice_no('S'); COMMIT"),
	'2', 'an idle database comes back on demand');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET invoice_seq.idle_timeout');
$node->reload;

# 7. DROP EXTENSION stops that database's sequencer.
new_database('d8');
my $d8_pid = $node->safe_psql('d8', 'SELECT invoice_seq.start_sequencer()');
$node->safe_psql('d8', 'DROP EXTENSION invoice_seq');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $d8_pid"),
	'DROP EXTENSION stops the sequencer of its database');

$node->stop;
done_testing();
