
# Saturation and lost answers.
#
# 1. More requesters than a batch holds: 120 clients at once, each reserving
#    inside a transaction block (the sequencer's work), with batches
#    of at most 64, then with batches of 1.  Every request is served;
#    nothing is lost or handed out twice.
# 2. Answers lost on the way: client processes are killed (SIGKILL) while
#    their requests are in flight, so the server may commit a reservation
#    whose answer nobody reads.  A retry with the same idempotency key gets
#    the same number, every key is in the ledger at most once, and the
#    ledger stays dense.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = InvoiceSeqTest::new_node('saturation', conf => 'max_connections = 150');
$node->safe_psql('postgres', "SELECT invoice_seq.create_series('S')");

my @all;
for my $batch (64, 1)
{
	$node->safe_psql('postgres', "ALTER SYSTEM SET invoice_seq.max_batch_size = $batch");
	$node->reload;
	$node->poll_query_until('postgres', 'SHOW invoice_seq.max_batch_size', $batch);
	$node->safe_psql('postgres', 'SELECT invoice_seq.stats_reset()');

	# every client waits at a barrier until all 120 are connected
	$node->safe_psql('postgres', 'DROP TABLE IF EXISTS go; CREATE TABLE go ()');
	my @clients = InvoiceSeqTest::start_scripts($node, "b$batch", map {
		my $c = $_;
		"DO \$\$ BEGIN WHILE NOT EXISTS (SELECT FROM go) LOOP PERFORM pg_sleep(0.01); END LOOP; END \$\$;\n"
		  . join '', map { "BEGIN; SELECT 'b$batch-c$c-$_', invoice_seq.reserve_invoice_no('S', 'b$batch-c$c-$_'); COMMIT;\n" } 1 .. 30
	} 1 .. 120);
	$node->poll_query_until('postgres',
		"SELECT count(*) = 120 FROM pg_stat_activity WHERE query LIKE 'DO \$\$ BEGIN WHILE%'")
	  or die 'the clients never all reached the barrier';
	$node->safe_psql('postgres', 'INSERT INTO go DEFAULT VALUES');
	InvoiceSeqTest::finish_clients(@clients);
	my $answers = InvoiceSeqTest::answers(@clients);
	my ($nerrors, $messages) = InvoiceSeqTest::errors(@clients);
	is(scalar(@$answers), 120 * 30, "batches of $batch: all 3600 requests of 120 clients served");
	is($nerrors, 0, "batches of $batch: no request failed")
	  or diag explain $messages;
	my ($requests, $max) = split /\|/, $node->safe_psql('postgres',
		'SELECT requests, max_batch_size FROM invoice_seq.stats');
	cmp_ok($max, '<=', $batch, "batches of $batch: no batch was larger (largest: $max)");
	cmp_ok($max, '>=', $batch == 1 ? 1 : 16, "batches of $batch: the requests did pile up");
	push @all, @$answers;
	InvoiceSeqTest::check_invariants($node, 'S', \@all, "batches of $batch");
}
$node->safe_psql('postgres', 'ALTER SYSTEM RESET invoice_seq.max_batch_size');
$node->reload;

# Lost answers: kill the clients themselves mid-flight.
my $before = $node->safe_psql('postgres',
	"SELECT count(*) FROM invoice_seq.ledger WHERE series = 'S'");
my @clients = InvoiceSeqTest::start_clients($node, 'S', 8, 3000, keyed => 1, tag => 'lost');
InvoiceSeqTest::wait_for_entries($node, 'S', $before + 1500);
for my $c (@clients)
{
	$c->{handle}->signal('KILL');
}
eval { $_->{handle}->finish } for @clients;

# The backends may still be finishing the requests they were given.
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity
	WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
	  AND query LIKE '%reserve_invoice_no%'});

my $answers = InvoiceSeqTest::answers(@clients);
cmp_ok(scalar(@$answers), '<', 8 * 3000, 'the clients were killed mid-load');
note scalar(@$answers) . ' answers read before the kill';

# Answers lost after the server committed: retries with the keys agree.
push @all, InvoiceSeqTest::check_key_retries($node, 'S', $answers, 'lost answers');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM (SELECT idempotency_key FROM invoice_seq.ledger
		                      WHERE series = 'S' AND idempotency_key IS NOT NULL
		                      GROUP BY 1 HAVING count(*) > 1) d}),
	'0', 'every key is in the ledger at most once');
push @all, @$answers;
InvoiceSeqTest::check_invariants($node, 'S', \@all, 'after the lost answers');

done_testing();
