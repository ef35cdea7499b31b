
# When the sequencer is unavailable, a reservation made inside a transaction
# block (the sequencer's work) fails with a SQLSTATE and a hint, and
# nothing is reserved.  A terminated sequencer comes back at the next
# request, which it serves.  Numbers taken outside a block need no
# sequencer.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Run $sql with verbose errors; return stderr.
sub error_of
{
	my ($node, $db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$sql");
	return $err;
}

# A reservation inside a transaction block, which the sequencer makes.
sub in_block
{
	my ($sql) = @_;
	return "BEGIN; $sql; COMMIT";
}

sub ledger_size
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, 'SELECT count(*) FROM invoice_seq.ledger');
}

# 1. Not preloaded: the extension can be created, but reserve refuses.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres',
	"CREATE EXTENSION invoice_seq; SELECT invoice_seq.create_series('S')");
my $err = error_of($plain, 'postgres', "SELECT invoice_seq.reserve_invoice_no('S')");
like($err, qr/ERROR:  55000: invoice_seq sequencer is not available/,
	'not preloaded: 55000');
like($err, qr/HINT:  Add invoice_seq to shared_preload_libraries/,
	'not preloaded: the hint says what to configure');
is(ledger_size($plain, 'postgres'), '0', 'not preloaded: nothing reserved');
$plain->stop;

# 2. A postgresql.conf written for 1.2 still names invoice_seq.database:
# the server starts, warns that the setting is ignored, and another
# database reserves inside a block with a sequencer of its own.
# (This node allows streaming, so that section 6 can ask for a synchronous
# standby.)
my $node = InvoiceSeqTest::new_node('main',
	init => { allows_streaming => 1 },
	conf => "invoice_seq.database = 'postgres'\n");
ok($node->log_contains(qr/WARNING:  invoice_seq.database is ignored/),
	'invoice_seq.database left in postgresql.conf: the server starts and warns');
$node->safe_psql('postgres', "SELECT invoice_seq.create_series('S')");
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other',
	"CREATE EXTENSION invoice_seq; SELECT invoice_seq.create_series('S')");
is($node->safe_psql('other', in_block("SELECT invoice_seq.reserve_invoice_no('S')")),
	'1', 'another database, in a block: its own sequencer reserves');
is( $node->safe_psql('other',
		"SELECT invoice_seq.reserve_invoice_no('S'), invoice_seq.next_invoice_no('S')"),
	'2|3', 'another database, outside a block: numbers are taken without the sequencer');
isnt(InvoiceSeqTest::sequencer_pid($node, 'other'), '',
	'another database: a sequencer runs there');

# 3. The sequencer is terminated: it is restarted, and a request made while
# it is away waits for the new one instead of failing.
is($node->safe_psql('postgres', in_block("SELECT invoice_seq.reserve_invoice_no('S')")),
	'1', 'the sequencer serves');
my $pid = InvoiceSeqTest::sequencer_pid($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid")
  or die 'the sequencer did not exit';
# (Without it, a request made now could not start a sequencer yet: the
# last one exited on an error less than a second ago.)
$err = error_of($node, 'postgres',
	in_block("SET invoice_seq.sequencer_timeout = 0; SELECT invoice_seq.reserve_invoice_no('S')"));
like($err, qr/ERROR:  55000: invoice_seq sequencer is not running/,
	'sequencer_timeout = 0 fails at once while no sequencer runs');
like($err, qr/HINT:  The sequencer of this database did not start within invoice_seq.sequencer_timeout/,
	'sequencer not running: the hint says what to check');
is($node->safe_psql('postgres', in_block("SELECT invoice_seq.reserve_invoice_no('S')")),
	'2', 'a request made while the sequencer restarts is served by the new one');
isnt(InvoiceSeqTest::sequencer_pid($node), $pid, 'a new sequencer runs');
ok($node->log_contains(qr/background worker "invoice_seq sequencer" \(PID $pid\) exited with exit code 1/),
	'the old sequencer exited with code 1');

# Start one reservation in the background; returns a handle whose stderr
# and stdout are filled once it finishes.
sub reserve_in_background
{
	my ($key) = @_;
	my %r = (out => '', err => '');
	$r{handle} = IPC::Run::start(
		[
			'psql', '-X', '-A', '-t', '-v', 'VERBOSITY=verbose',
			'-d', $node->connstr('postgres'),
			'-c', in_block("SELECT invoice_seq.reserve_invoice_no('S', '$key')")
		],
		'>', \$r{out}, '2>', \$r{err});
	return \%r;
}

# Poll until the sequencer waits on $event.
sub sequencer_waits_on
{
	my ($event) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity"
		  . " WHERE backend_type = 'invoice_seq sequencer' AND wait_event = '$event'")
	  and return;
	diag $node->safe_psql('postgres',
		"SELECT pid, backend_type, wait_event_type, wait_event, state, query"
		  . " FROM pg_stat_activity");
	die "the sequencer never waited on $event";
}

# 4. The sequencer exits in the middle of a batch, before committing: the
# waiting request is answered at once, and nothing was reserved.  A session
# holding a lock on the ledger keeps the sequencer inside the batch.
my $entries = ledger_size($node, 'postgres');
my $admin = $node->background_psql('postgres');
$admin->query_safe('BEGIN; LOCK TABLE invoice_seq.ledger_entry IN ACCESS EXCLUSIVE MODE');
my $r = reserve_in_background('k-before');
sequencer_waits_on('relation');
$pid = InvoiceSeqTest::sequencer_pid($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$r->{handle}->finish;
like($r->{err}, qr/ERROR:  55000: invoice_seq sequencer exited before reserving a number/,
	'sequencer exits mid-batch: 55000');
like($r->{err}, qr/DETAIL:  No number of series "S" was reserved/,
	'sequencer exits mid-batch: the detail says nothing was reserved');
$admin->query_safe('ROLLBACK');
InvoiceSeqTest::wait_for_sequencer($node, $pid);
is(ledger_size($node, 'postgres'), $entries, 'sequencer exits mid-batch: nothing reserved');

# 5. A lock on the ledger held longer than invoice_seq.lock_timeout: the
# sequencer gives up on that request instead of holding up every other one.
$node->safe_psql('postgres', "ALTER SYSTEM SET invoice_seq.lock_timeout = '200ms'");
$node->reload;
$admin->query_safe('BEGIN; LOCK TABLE invoice_seq.ledger_entry IN ACCESS EXCLUSIVE MODE');
$err = error_of($node, 'postgres',
	in_block("SELECT invoice_seq.reserve_invoice_no('S', 'k-locked')"));
like($err, qr/ERROR:  55P03: canceling statement due to lock timeout/,
	'table lock held past invoice_seq.lock_timeout: 55P03');
like($err, qr/HINT:  Another transaction holds a lock on the ledger/,
	'table lock held past invoice_seq.lock_timeout: the hint says why');
$admin->query_safe('ROLLBACK');
is(ledger_size($node, 'postgres'), $entries, 'lock timeout: nothing reserved');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET invoice_seq.lock_timeout');
$node->reload;

# 6. The sequencer exits after its batch committed locally, while it waits
# for a synchronous standby that does not exist.  The outcome is unknown to
# the requester, which is told to retry with the same key; the retry gets
# the number that was reserved.
# (The checkpointer applies synchronous_standby_names asynchronously after
# a reload, so restart to be sure that commits wait.)
$node->append_conf('postgresql.conf', "synchronous_standby_names = 'nobody'");
$node->restart;
InvoiceSeqTest::wait_for_sequencer($node);
$r = reserve_in_background('k-commit');
sequencer_waits_on('SyncRep');
$pid = InvoiceSeqTest::sequencer_pid($node);

# A cancel request would end that wait early without an error; the
# sequencer ignores it, so nobody is told about an unreplicated number.
# (This can only pass wrongly, by checking too early, never fail wrongly.)
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
sleep 1;
sequencer_waits_on('SyncRep');
ok($r->{handle}->pumpable, 'a cancel request does not end the wait for the standby');

$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$r->{handle}->finish;
like($r->{err},
	qr/ERROR:  40003: invoice_seq sequencer exited while committing a reservation/,
	'sequencer exits while committing: 40003, statement completion unknown');
like($r->{err}, qr/HINT:  Retry with the same idempotency key/,
	'sequencer exits while committing: the hint says to retry with the key');

# The same outside a block: the caller's own commit waits for the standby,
# whatever synchronous_commit says, and a caller terminated during that wait
# is never told the number.
my %a = (out => '', err => '');
$a{handle} = IPC::Run::start(
	[
		'psql', '-X', '-A', '-t', '-q', '-v', 'VERBOSITY=verbose',
		'-d', $node->connstr('postgres'),
		'-c', 'SET synchronous_commit = off',
		'-c', "SELECT invoice_seq.reserve_invoice_no('S', 'k-auto')"
	],
	'>', \$a{out}, '2>', \$a{err});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity"
	  . " WHERE backend_type = 'client backend' AND wait_event = 'SyncRep'")
  or die 'the autocommit reservation never waited for the standby';
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	  . " WHERE backend_type = 'client backend' AND wait_event = 'SyncRep'");
$a{handle}->finish;
is($a{out}, '', 'outside a block: a caller terminated while waiting for the standby gets no number');
like($a{err}, qr/terminating connection|server closed the connection/,
	'outside a block: that caller loses its connection');
$admin->quit;
$node->safe_psql('postgres', "ALTER SYSTEM SET synchronous_standby_names = ''");
$node->restart;
InvoiceSeqTest::wait_for_sequencer($node);
my $number = $node->safe_psql('postgres',
	"SELECT invoice_seq.reserve_invoice_no('S', 'k-commit')");
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM invoice_seq.ledger WHERE idempotency_key = 'k-commit'"),
	'1',
	'the reservation committed before the exit is in the ledger, once');
is($number, $entries + 1, 'the retry with the key gets that number');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM invoice_seq.ledger WHERE idempotency_key = 'k-auto'"),
	'1', 'outside a block: the reservation that committed locally is there, once');
is( $node->safe_psql('postgres', "SELECT count(*) FROM invoice_seq.check_series('S')"),
	'0', 'the series is healthy');

# 7. On a standby, no sequencer runs until promotion, and reserve refuses
# like nextval() does.
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
$err = error_of($standby, 'postgres', "SELECT invoice_seq.reserve_invoice_no('S')");
like($err, qr/ERROR:  25006: cannot execute reserve_invoice_no\(\) during recovery/,
	'on a standby: 25006');
$standby->stop;

$node->stop;

# 8. No sequencer can start (no worker slot): a request fails at once with
# 53400 and a hint, and nothing is reserved.
my $noworker = PostgreSQL::Test::Cluster->new('noworker');
$noworker->init;
$noworker->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'invoice_seq'
max_worker_processes = 0
});
$noworker->start;
$noworker->safe_psql('postgres',
	"CREATE EXTENSION invoice_seq; SELECT invoice_seq.create_series('S')");
$err = error_of($noworker, 'postgres',
	in_block("SELECT invoice_seq.reserve_invoice_no('S')"));
like($err, qr/ERROR:  53400: could not start the invoice_seq sequencer of this database/,
	'no worker slot: 53400');
like($err, qr/DETAIL:  Every background worker slot is in use; no number was reserved/,
	'no worker slot: the detail says nothing was reserved');
like($err, qr/HINT:  Raise max_worker_processes/,
	'no worker slot: the hint says what to configure');
is(ledger_size($noworker, 'postgres'), '0', 'no worker slot: nothing reserved');
is($noworker->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('S')"),
	'1', 'no worker slot: outside a block, a number is reserved all the same');

# The queue is left clean: once a sequencer can run, reservations work.
$noworker->append_conf('postgresql.conf', 'max_worker_processes = 8');
$noworker->restart;
InvoiceSeqTest::wait_for_sequencer($noworker);
is($noworker->safe_psql('postgres', in_block("SELECT invoice_seq.reserve_invoice_no('S')")),
	'2', 'after a restart with worker slots, the sequencer serves the next number');
$noworker->stop;

done_testing();
