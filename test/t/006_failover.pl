
# Failover to a synchronous standby under load.
#
# A primary with a synchronous standby serves keyed two-phase reservations
# and one-step calls from 8 clients.  Mid-load the primary is stopped
# immediately and the standby promoted.  On the new primary every number a
# client was answered with is in the ledger exactly once (with its key),
# nothing answered is missing, numbering goes on without handing out an
# answered number again, the ledger is dense and its indexes pass amcheck.
#
# With asynchronous replication the promise cannot hold: a reservation
# acknowledged by the primary may not have reached the standby.  README,
# "Limits".

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
	SELECT invoice_seq.create_series('S');
	CREATE TABLE app_invoice (no bigint PRIMARY KEY, client text NOT NULL);
});
my $standby = InvoiceSeqTest::synchronous_standby($primary, 'standby');
pass('the standby is synchronous');

# 4 clients reserve with keys (2 inside a transaction block, through the
# sequencer, and 2 outside, in their own statement), 4 take one-step numbers
# for their invoices.
my $nrequests = 3000;
my @scripts;
for my $c (1 .. 4)
{
	push @scripts, join '', map {
		my $sql = "SELECT 'f-c$c-$_', invoice_seq.reserve_invoice_no('S', 'f-c$c-$_');";
		($c <= 2 ? "BEGIN; $sql COMMIT;" : $sql) . "\n"
	} 1 .. $nrequests;
}
for my $c (5 .. 8)
{
	push @scripts, join '', map {
		"INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('S'), 'c$c') RETURNING '', no;\n"
	} 1 .. $nrequests;
}
my @clients = InvoiceSeqTest::start_scripts($primary, 'failover', @scripts);
InvoiceSeqTest::wait_for_entries($primary, 'S', 2000);

$primary->stop('immediate');
InvoiceSeqTest::finish_clients(@clients);
$standby->promote;
InvoiceSeqTest::wait_for_sequencer($standby);

my $answers = InvoiceSeqTest::answers(@clients);
cmp_ok(scalar(@$answers), '<', 8 * $nrequests, 'the failover cut the load short');
cmp_ok(scalar(@$answers), '>', 1000,
	scalar(@$answers) . ' numbers were answered before the failover');

# Answers of one-step calls count only if their transaction committed, which
# the client saw as the INSERT's row (autocommit): every one must be on the
# new primary, in app_invoice and issued in the ledger.
my @one_step = grep { $_->{key} eq '' } @$answers;
my %app = map { $_ => 1 } split /\n/, $standby->safe_psql('postgres', 'SELECT no FROM app_invoice');
my @lost_one_step = grep { !$app{ $_->{number} } } @one_step;
is(scalar(@lost_one_step), 0,
	scalar(@one_step) . ' one-step numbers answered: all in the application table')
  or diag join(' ', map { $_->{number} } @lost_one_step);
is(InvoiceSeqTest::issued_mismatches($standby, 'S', one_step => 1), '0', 'the one-step numbers issued are exactly the application\'s rows');

# Keyed reservations: every answered number is there with its key.
my @keyed = grep { $_->{key} ne '' } @$answers;
my ($count) = InvoiceSeqTest::check_invariants($standby, 'S', \@keyed,
	'after the failover (' . scalar(@keyed) . ' keyed answers)');

# Numbering goes on from where the old primary left, and retries of
# answered keys return their numbers.
# One-step numbers whose transactions died with the old primary come first.
my ($max, $lowest_free) = split /\|/, $standby->safe_psql('postgres', q{
	SELECT max(invoice_no),
	       min(invoice_no) FILTER (WHERE status = 'recyclable')
	FROM invoice_seq.ledger WHERE series = 'S'});
my $next = $standby->safe_psql('postgres', "SELECT invoice_seq.reserve_invoice_no('S')");
is($next, $lowest_free eq '' ? $max + 1 : $lowest_free,
	'reserving continues on the new primary: '
	  . ($lowest_free eq '' ? 'after the highest number' : 'with the lowest number not issued'));
my @mismatch;
for my $a (@keyed[ -20 .. -1 ])
{
	my $again = $standby->safe_psql('postgres',
		"SELECT invoice_seq.reserve_invoice_no('S', '$a->{key}')");
	push @mismatch, "$a->{key}: $a->{number} then $again" if $again ne $a->{number};
}
is(scalar(@mismatch), 0, 'retrying the last 20 answered keys returns their numbers')
  or diag join("\n", @mismatch);
$standby->safe_psql('postgres',
	"SELECT invoice_seq.next_invoice_no('S') FROM generate_series(1, 100)");
InvoiceSeqTest::check_invariants($standby, 'S', \@keyed, 'after 100 more calls');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM invoice_seq.check_series('S') WHERE problem <> 'stale_reservation'"),
	'0', 'check_series finds no gap');

done_testing();
