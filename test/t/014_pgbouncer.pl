
# Through PgBouncer (issue 21).  The test starts its own poolers in front
# of the node: one in transaction pooling, one in session pooling, each
# with fewer server connections (4) than clients (16), so that server
# connections really are shared.  pgbench drives every numbering path
# through each, with the simple and the extended protocol, and with
# prepared statements where the pooler supports them (session pooling
# always; transaction pooling from PgBouncer 1.21 on, with
# max_prepared_statements):
#
#   - one-step: next_invoice_no() in the INSERT of the application's row,
#     in the application's transaction; and one-step numbers rolled back;
#   - autocommit keyed reserve_invoice_no(), then confirm_invoice_no() in
#     the statement that writes the application's row;
#   - keyed reserve inside a transaction block, the answer recorded in
#     that block, then the confirm;
#   - autocommit reserve under a fresh key, then void_invoice_no().
#
# The keys of the keyed paths are drawn from one small set for the whole
# test, so the same key comes back from other clients, other server
# connections, other runs and both pooling modes.
#
# Afterwards: every answered number is in the ledger once, with its key;
# no number went to two answers; every key got one number, whoever asked;
# the ledger is dense; the issued numbers are exactly the application's
# rows, the voided ones exactly the voids it made, nothing is left
# reserved; check_series is empty.  Each run shows that its clients shared
# server connections (transaction pooling: a server connection served
# several clients, and a client used several; session pooling: one each,
# reused by later clients), that the sequencer answered the reservations
# made in blocks, and that each autocommit reservation under a new key was
# recorded in its own statement, not by the sequencer.
#
# Then, in transaction pooling: a client that vanishes inside its
# transaction leaves its number to the next caller, not to the next client
# of its server connection; SET LOCAL of a setting works and stays in its
# transaction, a plain SET reaches the next client of the server
# connection; in session pooling it does not (README, "Through a
# connection pooler").
#
# PgBouncer must be installed (test/run_all installs it): without it the
# test fails, it does not skip.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use File::Spec;
use InvoiceSeqTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes;

my $nclients = 16;
my $pool_size = 4;
my $transactions = 100;   # per client and run
my $nkeys = 300;          # keys of the keyed paths, for the whole test

# --- PgBouncer, found and its version known --------------------------------

my ($pgbouncer) = grep { -x $_ }
  map { File::Spec->catfile($_, 'pgbouncer') }
  (File::Spec->path, '/usr/sbin', '/usr/bin');
ok(defined $pgbouncer, 'pgbouncer is installed (test/run_all installs the package)')
  or do { done_testing(); exit 1; };
my $version_text = `$pgbouncer --version 2>&1`;
my ($major, $minor) = $version_text =~ /(\d+)\.(\d+)(?:\.\d+)?/;
ok(defined $minor, "pgbouncer --version tells its version: $pgbouncer")
  or do { diag $version_text; done_testing(); exit 1; };
my $version = "$major.$minor";
# Protocol-level prepared statements in transaction pooling: 1.21 on.
my $prepared_in_tx = $major > 1 || ($major == 1 && $minor >= 21);
note "PgBouncer $version: prepared statements in transaction pooling "
  . ($prepared_in_tx ? 'tested (max_prepared_statements)'
	: 'not supported by this version, tested in session pooling only');

# --- the node and the application -------------------------------------------

my $node = InvoiceSeqTest::new_node('pgbouncer');
my $user = $node->safe_psql('postgres', 'SELECT current_user');
# chronological => false: a run that crosses midnight must not make a
# confirm refuse (pgbench ends a client at its first error).
$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('S', time_zone => 'UTC', chronological => false);
	SELECT invoice_seq.create_series('CLK', time_zone => 'UTC', chronological => false);
	CREATE TABLE app_invoice (
	    no bigint PRIMARY KEY, path text NOT NULL, run text NOT NULL,
	    client int NOT NULL, backend int NOT NULL DEFAULT pg_backend_pid());
	CREATE TABLE app_answer (
	    run text NOT NULL, path text NOT NULL, key text, no bigint NOT NULL,
	    client int NOT NULL, backend int NOT NULL, xid bigint,
	    at timestamptz NOT NULL DEFAULT clock_timestamp());
	CREATE TABLE app_void (no bigint PRIMARY KEY);
	CREATE TABLE app_rollback (run text NOT NULL, no bigint NOT NULL);
});

# --- the poolers --------------------------------------------------------------

my @poolers;

# Start a pgbouncer in $mode pooling on a free port of 127.0.0.1, with
# database "postgres" (default_pool_size $pool_size) and "pinned" (one
# server connection) pointing at the node's "postgres".
sub start_pooler
{
	my ($name, $mode) = @_;
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/pgbouncer-$name";
	mkdir $dir or die "mkdir $dir: $!";
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $server = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
	PostgreSQL::Test::Utils::append_to_file("$dir/userlist.txt", qq{"$user" ""\n});
	my $ini = qq{[databases]
postgres = $server
pinned = $server pool_size=1

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = $user
pool_mode = $mode
default_pool_size = $pool_size
max_client_conn = 100
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
server_reset_query = DISCARD ALL
};
	$ini .= "max_prepared_statements = 100\n" if $prepared_in_tx;
	PostgreSQL::Test::Utils::append_to_file("$dir/pgbouncer.ini", $ini);
	my $out = '';
	my $h = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ],
		'>', \$out, '2>&1');
	my $p = { name => $name, mode => $mode, port => $port, handle => $h,
		dir => $dir, out => \$out };
	push @poolers, $p;

	# wait until it accepts clients and reaches the node
	for (1 .. 100)
	{
		my ($ret) = run_psql($p, 'postgres', 'SELECT 1');
		return $p if $ret == 0;
		die "pgbouncer ($mode) exited: $out" unless $h->pumpable;
		Time::HiRes::usleep(100_000);
	}
	die "pgbouncer ($mode) does not answer on port $port: $out";
}

END
{
	# stopping them must not change the test's exit status
	local $?;
	for my $p (@poolers)
	{
		$p->{handle}->signal('TERM') if $p->{handle}->pumpable;
		$p->{handle}->finish;
	}
}

# psql through a pooler: ($ret, $stdout, $stderr).
sub run_psql
{
	my ($p, $dbname, $sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
			'-h', '127.0.0.1', '-p', $p->{port}, '-U', $user, '-d', $dbname,
			'-c', $sql
		],
		'>', \$out, '2>', \$err);
	chomp $out;
	return ($? >> 8, $out, $err);
}

sub pooled_psql
{
	my ($p, $dbname, $sql) = @_;
	my ($ret, $out, $err) = run_psql($p, $dbname, $sql);
	die "psql through pgbouncer ($p->{mode}) failed: $err" if $ret != 0;
	return $out;
}

my $tx = start_pooler('tx', 'transaction');
my $session = start_pooler('session', 'session');
is(pooled_psql($tx, 'pgbouncer', 'SHOW CONFIG') =~ /pool_mode\|transaction\|/ ? 1 : 0,
	1, "pgbouncer $version started in transaction pooling on port $tx->{port}");
is(pooled_psql($session, 'pgbouncer', 'SHOW CONFIG') =~ /pool_mode\|session\|/ ? 1 : 0,
	1, "pgbouncer $version started in session pooling on port $session->{port}");

# --- load ---------------------------------------------------------------------

# The pgbench script of run $run: each transaction takes one path at
# random and records what it was answered, in the same transaction as the
# number's issue where the path has one.
sub script
{
	my ($run) = @_;
	my $k = q{'k-' || :k::int};
	my $file = "$PostgreSQL::Test::Utils::tmp_check/pgbouncer-$run.sql";
	PostgreSQL::Test::Utils::append_to_file($file, qq{
\\set path random(1, 10)
\\set k random(1, $nkeys)
\\if :path <= 3
BEGIN;
INSERT INTO app_invoice (no, path, run, client)
  VALUES (invoice_seq.next_invoice_no('S'), 'one-step', '$run', :client_id);
COMMIT;
\\elif :path = 4
BEGIN;
SELECT invoice_seq.next_invoice_no('S') AS rb \\gset
ROLLBACK;
INSERT INTO app_rollback VALUES ('$run', :rb);
\\elif :path <= 6
SELECT invoice_seq.reserve_invoice_no('S', $k) AS no, pg_backend_pid() AS pid,
       coalesce(pg_current_xact_id_if_assigned()::text::bigint, 0) AS xid \\gset
INSERT INTO app_answer VALUES ('$run', 'autocommit', $k, :no, :client_id, :pid, :xid);
INSERT INTO app_invoice (no, path, run, client)
  VALUES (invoice_seq.confirm_invoice_no('S', :no, 'ext-' || $k), 'keyed', '$run', :client_id)
  ON CONFLICT (no) DO NOTHING;
\\elif :path <= 8
BEGIN;
SELECT invoice_seq.reserve_invoice_no('S', $k) AS no \\gset
INSERT INTO app_answer VALUES ('$run', 'block', $k, :no, :client_id, pg_backend_pid());
COMMIT;
INSERT INTO app_invoice (no, path, run, client)
  VALUES (invoice_seq.confirm_invoice_no('S', :no, 'ext-' || $k), 'keyed', '$run', :client_id)
  ON CONFLICT (no) DO NOTHING;
\\else
SELECT invoice_seq.reserve_invoice_no('S', gen_random_uuid()::text) AS no,
       pg_backend_pid() AS pid, coalesce(pg_current_xact_id_if_assigned()::text::bigint, 0) AS xid \\gset
INSERT INTO app_answer VALUES ('$run', 'void', NULL, :no, :client_id, :pid, :xid);
BEGIN;
SELECT invoice_seq.void_invoice_no('S', :no, 'integrator rejected');
INSERT INTO app_void VALUES (:no);
COMMIT;
\\endif
});
	return $file;
}

sub sequencer_requests
{
	return $node->safe_psql('postgres',
		"SELECT coalesce(sum(requests), 0) FROM invoice_seq.stats WHERE database = 'postgres'");
}

my @tested;

# One run of pgbench through pooler $p with protocol $protocol.
sub run_load
{
	my ($p, $protocol) = @_;
	my $run = "$p->{name}-$protocol";
	my $file = script($run);
	my $requests_before = sequencer_requests();
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[
			'pgbench', '-n', '-c', $nclients, '-j', $nclients, '-t', $transactions,
			'-M', $protocol, '-f', $file,
			'-h', '127.0.0.1', '-p', $p->{port}, '-U', $user, 'postgres'
		],
		'>', \$out, '2>', \$err);
	my ($done, $asked) = $out =~ m{actually processed: (\d+)/(\d+)};
	ok($ok && defined $done && $done == $nclients * $transactions,
		"$run: pgbench ran "
		  . ($nclients * $transactions)
		  . " transactions of $nclients clients without an error")
	  or diag "pgbench: $out\n$err";
	push @tested, "$p->{mode} pooling, -M $protocol";

	my ($clients, $backends, $shared, $hopped, $max_per_client) = split /\|/,
	  $node->safe_psql('postgres', qq{
		WITH r AS (SELECT client, backend FROM app_invoice WHERE run = '$run'
		           UNION ALL SELECT client, backend FROM app_answer WHERE run = '$run')
		SELECT (SELECT count(DISTINCT client) FROM r), (SELECT count(DISTINCT backend) FROM r),
		       (SELECT count(*) FROM (SELECT backend FROM r GROUP BY backend
		                              HAVING count(DISTINCT client) > 1) s),
		       (SELECT count(*) FROM (SELECT client FROM r GROUP BY client
		                              HAVING count(DISTINCT backend) > 1) h),
		       (SELECT coalesce(max(n), 0) FROM (SELECT count(DISTINCT backend) n FROM r
		                                         GROUP BY client) m)});
	note "$run: $clients clients over $backends server connections;"
	  . " $shared served several clients, $hopped clients used several";
	ok($clients == $nclients && $backends <= $pool_size && $shared > 0,
		"$run: $nclients clients shared at most $pool_size server connections"
		  . " ($backends used, $shared of them by several clients)");
	if ($p->{mode} eq 'transaction')
	{
		cmp_ok($hopped, '>', 0,
			"$run: transactions of one client ran on different server connections");
	}
	else
	{
		is($max_per_client, 1, "$run: each client kept one server connection");
	}

	# The sequencer answers every reservation made inside a block.  It may
	# count more requests than that: a request that finds a key locked
	# (another client reserving the same key in its own statement) waits
	# for the lock and asks again (src/remote.c).
	my $in_block = $node->safe_psql('postgres',
		"SELECT count(*) FROM app_answer WHERE run = '$run' AND path = 'block'");
	my $requests = sequencer_requests() - $requests_before;
	cmp_ok($requests, '>=', $in_block,
		"$run: the sequencer answered the $in_block reservations made in a block"
		  . " ($requests requests)");
	# Through the pooler, a reservation outside a block is still recorded
	# in its own statement: under a new key, it writes its entry in the
	# statement's transaction, which has an xid when the next result
	# column is computed (through the sequencer, it would have none).
	is($node->safe_psql('postgres', qq{
		SELECT count(*) FROM app_answer WHERE run = '$run' AND path = 'void' AND xid = 0}),
		'0', "$run: every autocommit reservation under a new key was recorded in its own statement");
	return;
}

for my $protocol (qw(simple extended prepared))
{
	if ($protocol eq 'prepared' && !$prepared_in_tx)
	{
		note "transaction pooling, -M prepared: not tested, PgBouncer $version"
		  . ' has no prepared statements in transaction pooling (1.21 on)';
		next;
	}
	run_load($tx, $protocol);
}
run_load($session, $_) for qw(simple extended prepared);

# --- invariants -----------------------------------------------------------------

# Every answer: the reservations (with their keys; voids have none) and the
# one-step numbers (their rows committed with the number).
my @answers = map {
	my ($key, $no) = split /\|/, $_, 2;
	{ client => 'pgbench', key => $key, number => $no }
} split /\n/, $node->safe_psql('postgres', q{
	SELECT coalesce(key, ''), no FROM app_answer
	UNION ALL SELECT '', no FROM app_invoice WHERE path = 'one-step'});
InvoiceSeqTest::check_invariants($node, 'S', \@answers, 'after every run');

my ($keyed, $keys, $split, $across_runs, $across_modes, $wrong) = split /\|/,
  $node->safe_psql('postgres', q{
	WITH a AS (SELECT * FROM app_answer WHERE key IS NOT NULL)
	SELECT (SELECT count(*) FROM a), (SELECT count(DISTINCT key) FROM a),
	       (SELECT count(*) FROM (SELECT key FROM a GROUP BY key
	                              HAVING count(DISTINCT no) > 1) s),
	       (SELECT count(*) FROM (SELECT key FROM a GROUP BY key
	                              HAVING count(DISTINCT run) > 1) r),
	       (SELECT count(*) FROM (SELECT key FROM a GROUP BY key
	                              HAVING count(DISTINCT split_part(run, '-', 1)) > 1) m),
	       (SELECT count(*) FROM a JOIN invoice_seq.ledger l
	              ON l.series = 'S' AND l.invoice_no = a.no
	        WHERE l.idempotency_key IS DISTINCT FROM a.key OR l.status <> 'issued')});
is($split, 0, "every key got one number, whoever asked ($keyed keyed answers, $keys keys)");
cmp_ok($keyed - $keys, '>', $keys / 2, 'keys were retried (' . ($keyed - $keys) . ' retries)');
cmp_ok($across_runs, '>', 0, "$across_runs keys were retried in other runs");
cmp_ok($across_modes, '>', 0,
	"$across_modes keys were retried through both poolers");
is($wrong, 0, 'every keyed answer is issued in the ledger under its key');

is(InvoiceSeqTest::issued_mismatches($node, 'S'), '0',
	"the ledger's issued numbers are exactly the application's rows");
my ($voided, $void_mismatch, $reserved, $recyclable) = split /\|/,
  $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM app_void),
	       (SELECT count(*) FROM app_void v
	        FULL JOIN (SELECT invoice_no FROM invoice_seq.ledger
	                   WHERE series = 'S' AND status = 'voided') l ON l.invoice_no = v.no
	        WHERE v.no IS NULL OR l.invoice_no IS NULL),
	       (SELECT count(*) FROM invoice_seq.ledger WHERE series = 'S' AND status = 'reserved'),
	       (SELECT count(*) FROM invoice_seq.ledger WHERE series = 'S' AND status = 'recyclable')});
cmp_ok($voided, '>', 0, "numbers were voided ($voided)");
is($void_mismatch, 0, "the ledger's voided numbers are exactly the application's voids");
is($reserved, 0, 'no number is left reserved: every answered reservation was confirmed or voided');
is($node->safe_psql('postgres', "SELECT count(*) FROM invoice_seq.check_series('S')"),
	'0', "check_series is empty ($recyclable numbers rolled back are free for the next caller)");

my ($rolled_back, $again) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(DISTINCT r.no), count(DISTINCT r.no) FILTER (WHERE l.status <> 'recyclable')
	FROM app_rollback r
	LEFT JOIN invoice_seq.ledger l ON l.series = 'S' AND l.invoice_no = r.no});
cmp_ok($again, '>', 0, "of the $rolled_back numbers rolled back, $again went to later callers");

# The numbers rolled back go to the next callers, through the pooler too.
# A number rolled back below the top is free (one at the top simply
# becomes next again): a client holds a number while another commits the
# next one, then rolls back.
my ($held_out, $held_err) = ('', '');
my $holder = IPC::Run::start(
	[
		'psql', '-X', '-A', '-t', '-q', '-h', '127.0.0.1', '-p', $tx->{port},
		'-U', $user, '-d', 'postgres', '-c',
		"BEGIN; SELECT invoice_seq.next_invoice_no('S') IS NULL;"
		  . " SELECT pg_sleep(2) IS NULL, 'held'; ROLLBACK;"
	],
	'>', \$held_out, '2>', \$held_err);
$node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event = 'PgSleep'})
  or die 'the holder did not start';
pooled_psql($tx, 'postgres',
	"INSERT INTO app_invoice (no, path, run, client)"
	  . " VALUES (invoice_seq.next_invoice_no('S'), 'one-step', 'above', 0)");
$holder->finish;
$recyclable = $node->safe_psql('postgres',
	"SELECT count(*) FROM invoice_seq.ledger WHERE series = 'S' AND status = 'recyclable'");
cmp_ok($recyclable, '>', 0, "a rollback through the pooler leaves $recyclable free numbers");
my $free = $node->safe_psql('postgres', q{
	SELECT coalesce(string_agg(invoice_no::text, ',' ORDER BY invoice_no), '')
	FROM invoice_seq.ledger WHERE series = 'S' AND status = 'recyclable'});
my @drained = map {
	pooled_psql($tx, 'postgres',
		"INSERT INTO app_invoice (no, path, run, client)"
		  . " VALUES (invoice_seq.next_invoice_no('S'), 'one-step', 'drain', 0) RETURNING no")
} 1 .. $recyclable;
is(join(',', @drained), $free,
	"the $recyclable numbers rolled back are handed out again, lowest first");
is(InvoiceSeqTest::issued_mismatches($node, 'S'), '0',
	"then too, the issued numbers are exactly the application's rows");

# --- a client that vanishes inside its transaction ----------------------------
# PgBouncer must not hand its server connection, transaction open, to the
# next client (who would commit the number): it closes it, the backend's
# transaction aborts, and the number goes to the next caller.

$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('V', time_zone => 'UTC', chronological => false);
	CREATE TABLE app_v (no bigint PRIMARY KEY);
});
my ($v_in, $v_out) = ('', '');
my $vanishing = IPC::Run::start(
	[
		'psql', '-X', '-A', '-t', '-q', '-h', '127.0.0.1', '-p', $tx->{port},
		'-U', $user, '-d', 'postgres'
	],
	'<', \$v_in, '>', \$v_out, '2>', \my $v_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$v_in .= "BEGIN;\nINSERT INTO app_v VALUES (invoice_seq.next_invoice_no('V')) RETURNING no;\n";
$vanishing->pump until $v_out =~ /^(\d+)$/m;
my $held = $1;
$vanishing->kill_kill;
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'})
  or die 'the vanished client\'s transaction is still open';
is( pooled_psql($tx, 'postgres',
		"INSERT INTO app_v VALUES (invoice_seq.next_invoice_no('V')) RETURNING no"),
	$held,
	"transaction pooling: the number of a client that vanished in its transaction ($held)"
	  . ' goes to the next caller');
is($node->safe_psql('postgres', q{
	SELECT string_agg(invoice_no || ':' || status, ',') FROM invoice_seq.ledger
	WHERE series = 'V'}),
	"$held:issued", 'and it is issued once, by that caller');

# --- session state in transaction pooling ---------------------------------------
# "pinned" has one server connection: every client below gets the same
# backend, one after the other.

my $pid = pooled_psql($tx, 'pinned', 'SELECT pg_backend_pid()');
is(pooled_psql($tx, 'pinned', 'SELECT pg_backend_pid()'), $pid,
	'pinned: two clients in turn get the same server connection');

# The time a number of CLK was dated, in UTC, and whether that is the
# real clock (within the last hour).
sub dated
{
	my ($no) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT CASE WHEN reserved_at BETWEEN now() - interval '1 hour' AND now() THEN 'now'
		            ELSE to_char(reserved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') END
		FROM invoice_seq.ledger WHERE series = 'CLK' AND invoice_no = $no});
}

# A one-step number of CLK through pooler $p, database "pinned": (number,
# backend).
sub pinned_number
{
	my ($p, $sql) = @_;
	return split /\|/, pooled_psql($p, 'pinned',
		$sql // "SELECT invoice_seq.next_invoice_no('CLK'), pg_backend_pid()");
}

# SET LOCAL: the setting is the transaction's, and ends with it.
my ($n1, $b1) = pinned_number($tx, q{
	BEGIN;
	SET LOCAL invoice_seq.test_clock = '2030-01-02 03:04:05+00';
	SELECT invoice_seq.next_invoice_no('CLK'), pg_backend_pid();
	COMMIT;});
is(dated($n1), '2030-01-02 03:04:05',
	'transaction pooling: SET LOCAL invoice_seq.test_clock dates the number of its transaction');
my ($n2, $b2) = pinned_number($tx);
is("$b2 " . dated($n2), "$b1 now",
	'transaction pooling: the next client of that server connection numbers on the real clock');

# A plain SET stays with the server connection: the next client, another
# application perhaps, numbers on it.  Applications set what they need
# with SET LOCAL, or ALTER ROLE ... SET (README).
pooled_psql($tx, 'pinned', q{SET invoice_seq.test_clock = '2031-01-02 03:04:05+00'});
my ($n3, $b3) = pinned_number($tx);
is("$b3 " . dated($n3), "$b1 2031-01-02 03:04:05",
	'transaction pooling: a plain SET of one client reaches the next client of its server connection');
pooled_psql($tx, 'pinned', 'RESET invoice_seq.test_clock');

# Session pooling resets the server connection (DISCARD ALL) between clients.
my ($n4, $b4) = pinned_number($session, q{
	SET invoice_seq.test_clock = '2032-01-02 03:04:05+00';
	SELECT invoice_seq.next_invoice_no('CLK'), pg_backend_pid();});
my ($n5, $b5) = pinned_number($session);
is(dated($n4) . ' ' . dated($n5) . " $b5", "2032-01-02 03:04:05 now $b4",
	'session pooling: a SET of one client ends with its session, on the same server connection');

InvoiceSeqTest::check_invariants($node, 'CLK', [], 'CLK at the end');

note "PgBouncer $version, tested: " . join('; ', @tested);
note 'not tested: transaction pooling with -M prepared (PgBouncer < 1.21)'
  unless $prepared_in_tx;

done_testing();
