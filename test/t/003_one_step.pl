
# One-step numbering at scale: 16 clients make at least 10,000
# next_invoice_no() calls, half of them in transactions that roll back,
# while backends are terminated, a backend is killed with SIGKILL (the
# server restarts), and the server is shut down immediately.  Each committed
# call inserts its number into an application table in the same
# transaction.
#
# Afterwards: the application's numbers are exactly the ledger's issued
# numbers (a number is issued if and only if its transaction committed),
# nobody got a number twice, the ledger is dense with no voided entry, every
# number that was not issued is waiting to be handed out again and is, lowest
# first, and check_series is empty.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = InvoiceSeqTest::new_node('one_step');
$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('S', time_zone => 'UTC');
	CREATE TABLE app_invoice (no bigint PRIMARY KEY, client text NOT NULL);
});
my $start_day = $node->safe_psql('postgres', "SELECT current_date");

my $nclients = 16;
my $target = 10_000;
my @answers;
my $errors = 0;
my %messages;

# Each client alternates: a transaction that inserts an invoice with a
# one-step number and commits, then one that takes a number and rolls back.
sub script
{
	my ($client, $pairs) = @_;
	my $sql = "SET application_name = 'one_step_client';\n";
	for (1 .. $pairs)
	{
		$sql .= "BEGIN;\n"
		  . "INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('S'), '$client')"
		  . " RETURNING 'commit', no;\n"
		  . "COMMIT;\n"
		  . "BEGIN;\n"
		  . "SELECT 'rollback', invoice_seq.next_invoice_no('S');\n"
		  . "ROLLBACK;\n";
	}
	return $sql;
}

# The query for client backends (not the sequencer) in the middle of their
# work, the most recently started first: they have the most work left.
my $busy_clients = q{
	SELECT pid FROM pg_stat_activity
	WHERE backend_type = 'client backend' AND application_name = 'one_step_client'
	  AND state <> 'idle'
	ORDER BY backend_start DESC};

# One round of load; $fault, if any, strikes once the ledger has grown by
# $after entries.  $restarts says whether it restarts the server (and so
# the sequencer).
sub round
{
	my ($tag, $pairs, $after, $fault, $restarts) = @_;
	my $before = $node->safe_psql('postgres',
		"SELECT count(*) FROM invoice_seq.ledger WHERE series = 'S'");
	my @clients = InvoiceSeqTest::start_scripts($node, $tag,
		map { script("$tag-$_", $pairs) } 1 .. $nclients);
	if ($fault)
	{
		InvoiceSeqTest::wait_for_entries($node, 'S', $before + $after);
		my $old_pid = InvoiceSeqTest::sequencer_pid($node);
		$fault->();
		InvoiceSeqTest::finish_clients(@clients);
		InvoiceSeqTest::wait_for_sequencer($node, $restarts ? $old_pid : undef);
	}
	else
	{
		InvoiceSeqTest::finish_clients(@clients);
	}
	my $got = InvoiceSeqTest::answers(@clients);
	my ($n, $msgs) = InvoiceSeqTest::errors(@clients);
	$errors += $n;
	$messages{$_} += $msgs->{$_} for keys %$msgs;
	push @answers, @$got;
	note sprintf("%s: %d calls answered, %d errors", $tag, scalar(@$got), $n);
	cmp_ok(scalar(@$got), '<', 2 * $pairs * $nclients,
		"$tag: the fault struck while the load ran") if $fault;
	return scalar(@$got);
}

# 1. Terminate four client backends: their transactions abort cleanly.
round('terminate', 1500, 200, sub {
	$node->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM ($busy_clients LIMIT 4) c");
});

# 2. SIGKILL one client backend: the postmaster restarts the whole server,
# so every open transaction dies without running any abort code.
round('kill9', 1500, 200, sub {
	my $pid = $node->safe_psql('postgres', "$busy_clients LIMIT 1");
	kill 'KILL', $pid;
	$node->poll_query_until('postgres', 'SELECT 1', '1');
}, 1);
ok(InvoiceSeqTest::killed_by_sigkill($node),
	'kill9: the server went through crash recovery');

# 3. Immediate shutdown, then start again.
round('immediate', 1500, 200, sub {
	$node->stop('immediate');
	$node->start;
}, 1);

# 4. Load without a fault, until at least $target calls were answered.
my $missing = $target - scalar(@answers);
round('rest', int($missing / (2 * $nclients)) + 1, 0, undef) if $missing > 0;

my @commits = grep { $_->{key} eq 'commit' } @answers;
my @rollbacks = grep { $_->{key} eq 'rollback' } @answers;
cmp_ok(scalar(@answers), '>=', $target,
	sprintf("%d one-step calls answered (%d in transactions meant to commit, %d rolled back)",
		scalar(@answers), scalar(@commits), scalar(@rollbacks)));
cmp_ok(scalar(@rollbacks), '>=', $target * 0.45, 'about half of them were rolled back');
note "errors: $errors";
note "  $messages{$_} x $_" for sort keys %messages;
is(scalar(grep { /duplicate key/ } keys %messages), 0,
	'no client got a number another client had committed');

# A number is issued exactly when its transaction committed.
is(InvoiceSeqTest::issued_mismatches($node, 'S'), '0',
	"the application's numbers are exactly the ledger's issued numbers");

# Every number answered to a transaction that committed is in the ledger:
# numbers were reused, and still never twice among the committed ones.
my %committed = map { $_ => 1 } split /\n/,
  $node->safe_psql('postgres', 'SELECT no FROM app_invoice');
my $ledger_size = $node->safe_psql('postgres',
	"SELECT count(*) FROM invoice_seq.ledger WHERE series = 'S'");
cmp_ok($ledger_size, '<', scalar(@answers) * 0.75,
	"numbers were handed out again: $ledger_size ledger entries for "
	  . scalar(@answers) . ' calls');

my ($count, $distinct, $max, $issued, $recyclable, $other) = split /\|/,
  $node->safe_psql('postgres', q{
	SELECT count(*), count(DISTINCT invoice_no), max(invoice_no),
	       count(*) FILTER (WHERE status = 'issued'),
	       count(*) FILTER (WHERE status = 'recyclable'),
	       count(*) FILTER (WHERE status NOT IN ('issued', 'recyclable'))
	FROM invoice_seq.ledger WHERE series = 'S'});
ok($count == $max && $distinct == $count,
	"the ledger is dense: $count entries, 1..$max");
my $end_day = $node->safe_psql('postgres', "SELECT current_date");
SKIP:
{
	skip 'the run crossed midnight (UTC): numbers may rightly be voided to keep date order', 1
	  if $end_day ne $start_day;
	is($other, 0, "no entry is voided or reserved ($issued issued, $recyclable recyclable)");
}
is($node->safe_psql('postgres', "SELECT count(*) FROM invoice_seq.check_series('S')"),
	'0', 'check_series is empty');

# The numbers not issued go to the next callers, lowest first, before any
# fresh number; after them the committed ledger is dense too.
my $expect = $node->safe_psql('postgres', q{
	SELECT string_agg(invoice_no::text, ',' ORDER BY invoice_no)
	FROM invoice_seq.ledger WHERE series = 'S' AND status = 'recyclable'});
my @drained;
for (1 .. $recyclable)
{
	push @drained, $node->safe_psql('postgres',
		"INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('S'), 'drain') RETURNING no");
}
is(join(',', @drained), $expect // '',
	"the $recyclable numbers not issued are handed out again, lowest first");
is( $node->safe_psql('postgres', q{
		SELECT count(*) = max(no) AND count(*) = count(DISTINCT no) FROM app_invoice}),
	't', 'the issued numbers are now dense: 1..' . ($max // 0));
is( $node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('S')"),
	$max + 1, 'the next call gets a fresh number');

InvoiceSeqTest::check_invariants($node, 'S', [], 'at the end');

done_testing();
