
# Soak: mixed load with random faults for SOAK_MINUTES (default 10), the
# invariants checked after every fault.  Not part of CI: run test/soak.
#
# Each round starts 10 clients: 4 make keyed two-phase reservations (and
# confirm some), 4 issue one-step invoices, half of them rolled back, all
# in one series; 2 number random ones of SOAK_TENANTS (default 500) tenant
# series, one-step and two-phase, on an allocator of 64 entries, so that
# tenants are evicted and loaded all the time.
# After a random 2 to 8 seconds one fault strikes, chosen at random:
# SIGKILL of the sequencer, SIGKILL of a client backend, termination of
# four client backends, or an immediate shutdown.  Then: every keyed answer
# is in the ledger with its key, nothing was handed out twice, the ledger is
# dense, the application's invoices are exactly the issued one-step numbers,
# check_series finds no gap, and amcheck passes; and per tenant, the same
# (InvoiceSeqTest::check_tenants).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $minutes = $ENV{SOAK_MINUTES} // 10;
my $seed = $ENV{SOAK_SEED} || time;
srand($seed);
note "soak: $minutes minutes, seed $seed";

my $ntenants = $ENV{SOAK_TENANTS} // 500;
my $node = InvoiceSeqTest::new_node('soak', conf => 'invoice_seq.max_periods = 64');
$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('S');
	CREATE TABLE app_invoice (no bigint PRIMARY KEY, client text NOT NULL);
});
InvoiceSeqTest::create_tenants($node, $ntenants);

my $deadline = time + 60 * $minutes;
my (@keyed, @tenant_answers, %faults, $one_step_calls);
my $round = 0;

sub busy_clients
{
	return split /\n/, $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND application_name = 'soak_client'
		  AND state <> 'idle' ORDER BY backend_start DESC});
}

# Each fault returns whether the server (and so the sequencer) restarted.
my %fault = (
	'kill -9 sequencer' => sub {
		kill 'KILL', InvoiceSeqTest::sequencer_pid($node);
		return 1;
	},
	'kill -9 client backend' => sub {
		my ($pid) = busy_clients();
		return 0 unless $pid;
		kill 'KILL', $pid;
		return 1;
	},
	'terminate client backends' => sub {
		$node->safe_psql('postgres', q{
			SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE application_name = 'soak_client' LIMIT 4});
		return 0;
	},
	'immediate shutdown' => sub {
		$node->stop('immediate');
		$node->start;
		return 1;
	},
);
my @kinds = sort keys %fault;

while (time < $deadline)
{
	$round++;
	my @scripts;
	# keyed reservations: clients 1 and 2 inside a transaction block (the
	# sequencer records them), 3 and 4 outside (their own statement does)
	for my $c (1 .. 4)
	{
		push @scripts, "SET application_name = 'soak_client';\n" . join '', map {
			my $sql = "SELECT 'k$round-c$c-$_', invoice_seq.reserve_invoice_no('S', 'k$round-c$c-$_');";
			($c <= 2 ? "BEGIN; $sql COMMIT;" : $sql) . "\n"
		} 1 .. 20000;
	}
	for my $c (5 .. 8)
	{
		push @scripts, "SET application_name = 'soak_client';\n" . join '', map {
			$_ % 2
			  ? "INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('S'), 'r$round') RETURNING 'one-step', no;\n"
			  : "BEGIN;\nSELECT 'rolled-back', invoice_seq.next_invoice_no('S');\nROLLBACK;\n"
		} 1 .. 20000;
	}
	push @scripts, map {
		"SET application_name = 'soak_client';\n"
		  . InvoiceSeqTest::tenant_script("t$round", $_, $ntenants, 20000)
	} 9 .. 10;
	my @clients = InvoiceSeqTest::start_scripts($node, "r$round", @scripts);
	sleep(2 + int(rand(7)));

	my $kind = $kinds[ int(rand(@kinds)) ];
	my $old_pid = InvoiceSeqTest::sequencer_pid($node);
	my $restarted = $fault{$kind}->();
	$faults{$kind}++;
	$_->{handle}->signal('KILL') for @clients;    # end the round
	eval { $_->{handle}->finish } for @clients;
	InvoiceSeqTest::wait_for_sequencer($node, $restarted ? $old_pid : undef);

	my $answers = InvoiceSeqTest::answers(@clients);
	push @keyed, grep { $_->{key} =~ /^k/ } @$answers;
	$one_step_calls += grep { $_->{key} !~ /^k/ } @$answers;
	note sprintf('round %d: %s, %d answers', $round, $kind, scalar(@$answers));

	my ($count, $lost) = InvoiceSeqTest::check_invariants($node, 'S', \@keyed,
		"round $round ($kind)");
	is(InvoiceSeqTest::issued_mismatches($node, 'S', one_step => 1), '0', "round $round: the application's invoices are exactly the issued one-step numbers");
	push @tenant_answers, InvoiceSeqTest::tenant_answers(@clients);
	InvoiceSeqTest::check_tenants($node, \@tenant_answers, "round $round ($kind), tenants");
}

my $entries = $node->safe_psql('postgres',
	"SELECT count(*) FROM invoice_seq.ledger WHERE series = 'S'");
diag sprintf('soak: %d rounds in %d minutes; faults: %s; %d keyed answers, %d one-step calls, %d ledger entries; %d answers in %d tenants; seed %s',
	$round, $minutes, join(', ', map { "$faults{$_} x $_" } sort keys %faults),
	scalar(@keyed), $one_step_calls, $entries, scalar(@tenant_answers), $ntenants, $seed);

done_testing();
