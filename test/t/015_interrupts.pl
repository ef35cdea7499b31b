
# Interrupted waits (issue 21): statement_timeout, lock_timeout and
# pg_cancel_backend() during each wait a numbering call can make, and
# idle_in_transaction_session_timeout ending a one-step holder.
#
# The waits, each made to happen by another session holding what the call
# needs:
#   series lock    next_invoice_no() and an autocommit reserve, behind an
#                  alter_series() not yet committed;
#   sequencer      a reservation inside a transaction block, queued for a
#                  sequencer that waits for a table lock;
#   key lock       a reserve of a new key that another client's statement
#                  is recording;
#   confirm        a confirm of a number being confirmed;
#   sync standby   the commit of a one-step number, and of an autocommit
#                  reserve, waiting for a synchronous standby that is down
#                  (a cancel only: statement_timeout is stopped before the
#                  commit).
#
# Each interrupted call answers one of the documented outcomes: 57014 for
# statement_timeout and a cancel, 55P03 for lock_timeout (for the
# sequencer's wait, its own invoice_seq.lock_timeout), or, for the commit
# waiting for the standby, no answer: the connection ends, and a retry with
# the same key gets the number once the standby is back.  Afterwards nothing is lost or handed out twice: every
# answered number is in the ledger once, with its key, the series are
# dense, a key retried gets its number, and check_series is empty.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use DBI;
use DBD::Pg qw(:async);
use IPC::Run;
use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $node = InvoiceSeqTest::new_node('interrupts', init => { allows_streaming => 1 },
	conf => "invoice_seq.lock_timeout = '2s'");
$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series(s, stale_after => '1 day')
	FROM unnest(ARRAY['A', 'Q', 'RK']) s;
	SELECT invoice_seq.reserve_invoice_no('RK', 'rk-' || n) FROM generate_series(1, 30) n;
});

sub connect_db
{
	my $dbh = DBI->connect('dbi:Pg:' . $node->connstr('postgres'), '', '',
		{ AutoCommit => 1, RaiseError => 0, PrintError => 0, pg_server_prepare => 0 })
	  or die "cannot connect: $DBI::errstr";
	$dbh->do("SET client_min_messages = warning");
	return $dbh;
}

sub must
{
	my ($dbh, $sql) = @_;
	$dbh->do($sql) // die "$sql: " . $dbh->errstr;
}

# Start $sql on $dbh without waiting for it.
sub start
{
	my ($dbh, $sql) = @_;
	my $sth = $dbh->prepare($sql, { pg_async => PG_ASYNC });
	$sth->execute;
	return $sth;
}

# Wait for $sql started on $dbh; returns (SQLSTATE, first value).
sub finish
{
	my ($dbh, $sth) = @_;
	my $t0 = time;
	until ($dbh->pg_ready)
	{
		die 'a call did not end within 60 s' if time - $t0 > 60;
		sleep 0.02;
	}
	my $rv = $dbh->pg_result;
	return ($dbh->state, undef) unless defined $rv;
	my $row = $sth->fetchrow_arrayref;
	return ('00000', $row ? $row->[0] : undef);
}

# Wait until backend $pid waits for $event_type (Lock, Extension, IPC: the
# sequencer's answer, a synchronous standby, Timeout: pg_sleep).
sub wait_until_waiting
{
	my ($pid, $event_type) = @_;
	$node->poll_query_until('postgres',
		"SELECT wait_event_type = '$event_type' FROM pg_stat_activity WHERE pid = $pid")
	  or die "backend $pid never waited for $event_type";
}

# The waiter is a psql process, whose answer is read as any client reads
# one (DBD::Pg's asynchronous calls report a cancelled statement one way
# on Debian 12 and another in forky), with VERBOSITY sqlstate so that an
# error shows its SQLSTATE alone.
my $waiters = 0;
sub start_waiter
{
	my (@commands) = @_;
	my $name = 'waiter-' . ++$waiters;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=sqlstate',
		  '-d', $node->connstr('postgres') . " application_name=$name",
		  map { ('-c', $_) } @commands ],
		'>', \$out, '2>', \$err);
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = '$name'")
	  or die "$name never connected";
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = '$name'");
	return { handle => $h, out => \$out, err => \$err, pid => $pid };
}

# The waiter's outcome: (SQLSTATE, answer); a lost connection is 08006.
sub finish_waiter
{
	my ($w) = @_;
	$w->{handle}->finish;
	my ($out, $err) = (${ $w->{out} }, ${ $w->{err} });
	return ($1, undef) if $err =~ /ERROR:\s+([0-9A-Z]{5})/;
	return ('08006', undef)
	  if $err =~ /server closed the connection|connection to server was lost|no connection to the server/;
	my ($value) = grep { length } split /\n/, $out;
	return ('00000', $value);
}

my $admin = connect_db();
my %answered;    # "series\tnumber" => key or '' for one-step numbers
my %interrupt = (
	statement_timeout => { set => "SET statement_timeout = '300ms'", states => ['57014'] },
	lock_timeout      => { set => "SET lock_timeout = '300ms'", states => ['55P03'] },
	cancel            => { set => 'RESET statement_timeout', states => ['57014'] });

# One interrupted wait: $hold makes the holder hold what $call needs; the
# waiter's interruption ends the wait; $release lets the holder go.
sub interrupted
{
	my (%w) = @_;
	my $holder = connect_db();
	must($holder, $_) for @{ $w{hold} // [] };
	my $held;
	if ($w{hold_async})
	{
		$held = start($holder, $w{hold_async});
		wait_until_waiting($holder->{pg_pid}, 'Timeout');
	}
	my $waiter = start_waiter($interrupt{ $w{kind} }->{set}, @{ $w{before} // [] }, $w{call});
	if ($w{kind} eq 'cancel')
	{
		wait_until_waiting($waiter->{pid}, $w{event});
		$admin->do("SELECT pg_cancel_backend($waiter->{pid})");
	}
	my ($state, $value) = finish_waiter($waiter);
	my @expected = @{ $w{states} // $interrupt{ $w{kind} }->{states} };
	ok((grep { $_ eq $state } @expected),
		"$w{name}, $w{kind}: $state (expected " . join(' or ', @expected) . ')');
	$answered{ $w{series} . "\t" . $value } = $w{key} // '' if defined $value;
	must($holder, $_) for @{ $w{release} // [] };
	if ($held)
	{
		my ($hstate, $hvalue) = finish($holder, $held);
		is($hstate, '00000', "$w{name}, $w{kind}: the holder is answered");
		$answered{ $w{series} . "\t" . $hvalue } = $w{key} if defined $hvalue;
	}
	$holder->disconnect;
}

my $alter = ["BEGIN", "SELECT invoice_seq.alter_series('A', stale_after => '2 days')"];
my $key = 0;
for my $kind (qw(statement_timeout lock_timeout cancel))
{
	interrupted(name => 'one-step behind the series lock', kind => $kind,
		series => 'A', hold => $alter, release => ['COMMIT'], event => 'Lock',
		call => "SELECT invoice_seq.next_invoice_no('A')");
	my $k = 'a-' . $key++;
	interrupted(name => 'autocommit reserve behind the series lock', kind => $kind,
		series => 'A', key => $k, hold => $alter, release => ['COMMIT'], event => 'Lock',
		call => "SELECT invoice_seq.reserve_invoice_no('A', '$k')");
	# the key was not used: a retry takes a number now
	my $n = $node->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('A', '$k')");
	$answered{"A\t$n"} = $k;

	# The sequencer waits for its table lock (invoice_seq.lock_timeout,
	# 2 s); the caller waits for the sequencer.  A lock_timeout of the
	# caller does not bound that wait; the sequencer's own does (55P03).
	$k = 'q-' . $key++;
	interrupted(name => 'reservation in a block, queued for the sequencer', kind => $kind,
		series => 'Q', key => $k, event => 'Extension',
		hold => ['BEGIN', 'LOCK TABLE invoice_seq.ledger_entry IN SHARE MODE'],
		release => ['COMMIT'], before => ['BEGIN'],
		call => "SELECT invoice_seq.reserve_invoice_no('Q', '$k')");
	# whatever the sequencer did with the abandoned request, the key now
	# finds one number
	$n = $node->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('Q', '$k')");
	is($node->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('Q', '$k')"),
		$n, "sequencer, $kind: the key finds its number again");
	$answered{"Q\t$n"} = $k;

	# A new key that another client's statement is recording: the key
	# lock is held until that statement's transaction commits.
	$k = 'kl-' . $key++;
	interrupted(name => 'new key being recorded by another statement', kind => $kind,
		series => 'RK', key => $k, event => 'Lock',
		hold_async => "SELECT invoice_seq.reserve_invoice_no('RK', '$k'), pg_sleep(3)",
		call => "SELECT invoice_seq.reserve_invoice_no('RK', '$k')");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM invoice_seq.ledger WHERE idempotency_key = '$k'"),
		'1', "key lock, $kind: the key has one number");

	# a retried key whose number another transaction is confirming does not
	# wait: it gets its number, reserved
	my $no = 1 + 3 * $key;
	{
		my $holder = connect_db();
		must($holder, $_) for ('BEGIN', "SELECT invoice_seq.confirm_invoice_no('RK', $no, 'ext-$no')");
		is($node->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('RK', 'rk-$no')"),
			$no, "retried key of a number being confirmed ($kind round): answered at once");
		must($holder, 'COMMIT');
		$holder->disconnect;
	}

	# a confirm waiting for another confirm of the same number
	$no++;
	interrupted(name => 'confirm behind a confirm', kind => $kind,
		series => 'RK', event => 'Lock',
		hold => ['BEGIN', "SELECT invoice_seq.confirm_invoice_no('RK', $no, 'ext-$no')"],
		release => ['ROLLBACK'],
		call => "SELECT invoice_seq.confirm_invoice_no('RK', $no, 'ext-$no')");
	is($node->safe_psql('postgres', "SELECT invoice_seq.confirm_invoice_no('RK', $no, 'ext-$no')"),
		$no, "confirm, $kind: a retry confirms");
}

# A one-step holder ended by idle_in_transaction_session_timeout: its number
# is free, and the next caller gets it.
{
	my $holder = connect_db();
	must($holder, "SET idle_in_transaction_session_timeout = '300ms'");
	$holder->begin_work;
	my ($n) = $holder->selectrow_array("SELECT invoice_seq.next_invoice_no('A')");
	my $pid = $holder->{pg_pid};
	$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid")
	  or die 'the idle holder was not ended';
	ok(!$holder->ping, 'idle_in_transaction_session_timeout ended the one-step holder');
	is($node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('A')"),
		$n, 'its number goes to the next caller');
	$answered{"A\t$n"} = '';
}

# A synchronous standby that is down: the commit of a number waits for it.
# A cancel ends that wait; PostgreSQL would then answer with a warning, the
# commit being local only, and a failover could hand the number out again.
# invoice_seq closes the connection instead, without an answer: the client
# sees a lost connection and retries with the same key.  (statement_timeout
# does not end the wait: PostgreSQL stops its timer before the commit.)
my $standby = InvoiceSeqTest::synchronous_standby($node, 'standby');
$standby->stop;
my $one_step_before = $node->safe_psql('postgres',
	"SELECT count(*) FROM invoice_seq.ledger WHERE series = 'A' AND status = 'issued'");
for my $call ("SELECT invoice_seq.next_invoice_no('A')",
	"SELECT invoice_seq.reserve_invoice_no('A', 'sync-1')")
{
	my $waiter = start_waiter($call);
	wait_until_waiting($waiter->{pid}, 'IPC');
	$admin->do("SELECT pg_cancel_backend($waiter->{pid})");
	my ($state, $value) = finish_waiter($waiter);
	ok($state =~ /^08|^57P0/ && !defined $value,
		"$call, its commit waiting for the standby, cancelled: no answer, the connection ends ($state)");
}
is($node->safe_psql('postgres',
		"SELECT count(*) FROM invoice_seq.ledger WHERE series = 'A' AND status = 'issued'"),
	$one_step_before + 1, 'the one-step number is committed here');
$standby->start;
InvoiceSeqTest::wait_until_synchronous($node, 'standby');
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT count(*) FROM invoice_seq.ledger WHERE idempotency_key = 'sync-1'"),
	'1', 'the standby, back, has them');
my $sync_no = $node->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('A', 'sync-1')");
is($node->safe_psql('postgres', "SELECT status FROM invoice_seq.ledger WHERE idempotency_key = 'sync-1'"),
	'reserved', "the client's retry with the same key gets the number ($sync_no)");
$answered{"A\t$sync_no"} = 'sync-1';
$node->append_conf('postgresql.conf', "synchronous_standby_names = ''");
$node->reload;

# Nothing lost, nothing twice.
my %ledger = map { my ($s, $n, $k, $st) = split /\|/; ("$s\t$n" => [ $k, $st ]) }
  split /\n/, $node->safe_psql('postgres',
	"SELECT series, invoice_no, coalesce(idempotency_key, ''), status FROM invoice_seq.ledger");
my @missing = grep { !$ledger{$_} || $ledger{$_}->[0] ne $answered{$_} } sort keys %answered;
is(scalar(@missing), 0, scalar(keys %answered) . ' answered numbers in the ledger with their keys')
  or diag("missing or other key: @missing");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT series FROM invoice_seq.ledger GROUP BY series
	                      HAVING count(*) <> max(invoice_no) OR count(DISTINCT invoice_no) <> count(*)) d}),
	'0', 'every series is dense, each number once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM invoice_seq.check_series()'),
	'0', 'check_series is empty');

$node->stop;
done_testing();
