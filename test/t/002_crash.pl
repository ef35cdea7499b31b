
# Faults under load: kill -9 of the sequencer, kill -9 of a backend waiting
# for it, an immediate shutdown, and kill -9 of a backend in the middle of a
# confirm.  After each one, every number a client
# was answered with is in the ledger exactly once, the ledger is dense, no
# number was handed out twice, and the ledger's indexes pass amcheck.  A
# retry with the key of an answered request gets the same number.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = InvoiceSeqTest::new_node('crash');
$node->safe_psql('postgres', "SELECT invoice_seq.create_series('S')");

my $nclients = 8;
my $nrequests = 6000;
my @all_answers;
my $faults = 0;

# One round: start the load, wait until it is well under way, inject the
# fault, let the clients end, wait for the node and its sequencer, and
# check the invariants over every answer so far.
sub round
{
	my ($tag, $fault) = @_;

	my $before = $node->safe_psql('postgres',
		"SELECT count(*) FROM invoice_seq.ledger WHERE series = 'S'");
	my @clients = InvoiceSeqTest::start_clients($node, 'S', $nclients, $nrequests,
		keyed => 1, tag => $tag);
	InvoiceSeqTest::wait_for_entries($node, 'S', $before + 500);
	my $old_pid = InvoiceSeqTest::sequencer_pid($node);
	$fault->();
	$faults++;
	InvoiceSeqTest::finish_clients(@clients);
	InvoiceSeqTest::wait_for_sequencer($node, $old_pid);

	my $answers = InvoiceSeqTest::answers(@clients);
	my ($nerrors) = InvoiceSeqTest::errors(@clients);
	cmp_ok(scalar(@$answers), '<', $nclients * $nrequests,
		"$tag: the fault cut the load short");
	note sprintf("%s: %d numbers answered, %d requests failed or unanswered",
		$tag, scalar(@$answers), $nclients * $nrequests - scalar(@$answers));
	push @all_answers, @$answers;
	InvoiceSeqTest::check_invariants($node, 'S', \@all_answers, "after $tag");

	push @all_answers,
	  InvoiceSeqTest::check_key_retries($node, 'S', $answers, $tag, $nrequests);

	return;
}

# 1. kill -9 of the sequencer.  The postmaster restarts the whole cluster.
round('kill-sequencer',
	sub {
		my $pid = InvoiceSeqTest::sequencer_pid($node);
		ok($pid, 'found the sequencer');
		kill 'KILL', $pid;
	});

# 2. kill -9 of a backend that waits for the sequencer.  Backends wait on
# their latch (wait event "Extension") only for the few milliseconds of a
# batch, so poll until one is caught waiting; if none is caught, kill one
# that is running a reservation, which is the same fault a moment earlier.
round('kill-waiting-backend',
	sub {
		my $pid = '';
		for (1 .. 200)
		{
			$pid = $node->safe_psql('postgres',
				"SELECT pid FROM pg_stat_activity"
				  . " WHERE backend_type = 'client backend'"
				  . " AND wait_event_type = 'Extension'"
				  . " AND query LIKE '%reserve_invoice_no%' LIMIT 1");
			last if $pid;
		}
		if ($pid)
		{
			pass('caught a backend waiting for the sequencer');
		}
		else
		{
			$pid = $node->safe_psql('postgres',
				"SELECT pid FROM pg_stat_activity"
				  . " WHERE backend_type = 'client backend'"
				  . " AND query LIKE '%reserve_invoice_no%' AND state = 'active' LIMIT 1");
			ok($pid, 'found a backend running a reservation');
		}
		kill 'KILL', $pid;
	});

# 3. An immediate shutdown under load, then a restart.
round('immediate-shutdown',
	sub {
		$node->stop('immediate');
		$node->start;
	});

# 4. kill -9 of a backend in the middle of a confirm: its transaction has
# updated the entry and not committed.  After the restart the number is
# still reserved, nothing else changed, and confirming it again works.
my ($to_confirm) = $node->safe_psql('postgres', q{
	SELECT invoice_no FROM invoice_seq.ledger WHERE series = 'S' AND status = 'reserved'
	ORDER BY invoice_no LIMIT 1});
my $confirmer_sql = "$PostgreSQL::Test::Utils::tmp_check/confirmer.sql";
PostgreSQL::Test::Utils::append_to_file($confirmer_sql,
	"SET application_name = 'confirmer';\nBEGIN;\n"
	  . "SELECT invoice_seq.confirm_invoice_no('S', $to_confirm, 'ext-killed');\n"
	  . "SELECT pg_sleep(300);\n");
my $confirmer = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-f', $confirmer_sql ],
	'>', '/dev/null', '2>', '/dev/null');
round('kill-confirming-backend',
	sub {
		$node->poll_query_until('postgres', q{
			SELECT count(*) = 1 FROM pg_stat_activity
			WHERE application_name = 'confirmer' AND query LIKE '%pg_sleep%'})
		  or die 'the confirm never reached its pause';
		my $pid = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE application_name = 'confirmer'");
		ok($pid, 'a backend is in the middle of a confirm');
		kill 'KILL', $pid;
	});
eval { $confirmer->finish };
is( $node->safe_psql('postgres',
		"SELECT status FROM invoice_seq.ledger WHERE series = 'S' AND invoice_no = $to_confirm"),
	'reserved', 'the confirm killed before its commit left the number reserved');
$node->safe_psql('postgres',
	"SELECT invoice_seq.confirm_invoice_no('S', $to_confirm, 'ext-again')");
is( $node->safe_psql('postgres',
		"SELECT status || ' ' || external_ref FROM invoice_seq.ledger WHERE series = 'S' AND invoice_no = $to_confirm"),
	'issued ext-again', 'confirming it again works');

# After all that, numbering goes on with the lowest free number (one a
# crash left without its row), else right after the highest number, and the
# next number was never answered before.
my ($expected) = $node->safe_psql('postgres', q{
	SELECT coalesce(min(invoice_no) FILTER (WHERE status = 'recyclable'),
	                max(invoice_no) + 1)
	FROM invoice_seq.ledger WHERE series = 'S'});
my $next = $node->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('S')");
is($next, $expected, 'numbering continues with the lowest free number, else after the highest');
ok(!grep({ $_->{number} == $next } @all_answers),
	'the next number was never handed out before');

my (undef, $lost) =
  InvoiceSeqTest::check_invariants($node, 'S', \@all_answers, 'at the end');
note sprintf("%d numbers answered across %d faults; %d lost",
	scalar(@all_answers), $faults, $lost);

$node->stop;
done_testing();
