
# Many tenants (1.4.1).  (a) Hundreds of tenant series numbered at random
# by one-step and keyed two-phase clients, on an allocator far smaller than
# the tenants (it evicts all the time), through an immediate shutdown and a
# kill -9 of a backend: per tenant, every answered number is in the ledger
# once, the ledger is dense, the issued one-step numbers are exactly the
# application's rows, a retried key gets its number, and check_series is
# empty.  (b) With the default settings, one statement numbers 20,000
# series.  (c) The first number after a restart reads the ledger above the
# sealed chain head only: a series of 1,000,000 numbers loads with as few
# rows read as one of 1,000, and a series with an unsealed tail reads that
# tail, not its history.  (d) The sequencer seals the chains that changed,
# and looks at every chain only when it must: an idle sequencer reads
# (almost) nothing, whatever the number of chains.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ntenants = 300;
my $nclients = 6;
my $nrequests = 1500;

my $node = InvoiceSeqTest::new_node('tenants', conf => q{
invoice_seq.max_periods = 32
});
InvoiceSeqTest::create_tenants($node, $ntenants);

# --- (a) random tenants under faults ------------------------------------

my @all;

# One round: start the load, let it run until the ledger has grown by
# $grow entries, strike ($fault may be undef: the load runs out), wait for
# the node, and check every answer so far.
sub round
{
	my ($tag, $grow, $fault) = @_;
	my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM invoice_seq.ledger_entry');
	my @clients = InvoiceSeqTest::start_scripts($node, $tag,
		map { InvoiceSeqTest::tenant_script($tag, $_, $ntenants, $nrequests) } 1 .. $nclients);
	if ($fault)
	{
		$node->poll_query_until('postgres',
			"SELECT count(*) >= $before + $grow FROM invoice_seq.ledger_entry")
		  or die "$tag: the load did not start";
		$fault->();
	}
	InvoiceSeqTest::finish_clients(@clients);
	InvoiceSeqTest::wait_for_sequencer($node);
	my @answers = InvoiceSeqTest::tenant_answers(@clients);
	note sprintf('%s: %d answers', $tag, scalar(@answers));
	cmp_ok(scalar(@answers), '>', 0, "$tag: clients were answered");
	push @all, @answers;
	InvoiceSeqTest::check_tenants($node, \@all, "after $tag");
	return;
}

round('immediate', 1500, sub { $node->stop('immediate'); $node->start; });
round('kill-backend', 1500, sub {
	my $pid = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND query LIKE '%invoice_seq%'
		  AND pid <> pg_backend_pid() LIMIT 1});
	ok($pid, 'found a numbering backend to kill');
	kill 'KILL', $pid;
	$node->poll_query_until('postgres', 'SELECT 1', '1');
});
round('drain', 0, undef);

# A retried key gets its number, whatever became of it since.
my @retry = grep { $_->[0] eq 'R' } @all;
my @differ;
for my $a (grep { defined } @retry[0 .. 199])
{
	my ($kind, $series, $key, $no) = @$a;
	my $again = $node->safe_psql('postgres',
		"SELECT invoice_seq.reserve_invoice_no('$series', '$key')");
	push @differ, "$series $key: $no then $again" if $again ne $no;
}
is(scalar(@differ), 0, 'a retried key of any tenant gets the number it was answered with')
  or diag join("\n", @differ);
ok($node->safe_psql('postgres',
		"SELECT count(*) > 32 FROM (SELECT DISTINCT series FROM app_tenant) s") eq 't',
	'the load numbered more tenants than the allocator holds');

# --- (b) 20,000 series in one statement -----------------------------------

$node->append_conf('postgresql.conf', 'invoice_seq.max_periods = 65536');
$node->restart;
InvoiceSeqTest::wait_for_sequencer($node);
$node->safe_psql('postgres',
	"SELECT count(invoice_seq.create_series('m' || i)) FROM generate_series(1, 20000) i");
is($node->safe_psql('postgres',
		"SELECT count(DISTINCT (i, invoice_seq.next_invoice_no('m' || i)))"
		  . " FROM generate_series(1, 20000) i"),
	'20000', 'one statement numbers 20,000 series');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE status = 'issued' AND invoice_no = 1), count(*)
	FROM invoice_seq.ledger WHERE series LIKE 'm%'}),
	'20000|20000', 'and each of them has its number 1, issued');

# --- (d) sealing looks at the chains that changed only -----------------------

# Every final entry of the m series linked: 20,000 chains changed in one
# commit, more than the list of changed chains holds, so the sequencer
# sweeps them all.  (The tenants of (a) keep reservations that their
# faults left, below which nothing is sealed.)
my $all_linked = q{
	SELECT (SELECT count(*) FROM invoice_seq.ledger_entry e
	        JOIN invoice_seq.series_def s ON s.id = e.series_id
	        WHERE s.name LIKE 'm%' AND e.status <> 'reserved')
	     = (SELECT count(*) FROM invoice_seq.ledger_link l
	        JOIN invoice_seq.series_def s ON s.id = l.series_id
	        WHERE s.name LIKE 'm%')};
ok($node->poll_query_until('postgres', $all_linked),
	'past the list of changed chains, a sweep seals every chain');

# Index scans of the extension's tables, from every process.
sub scans
{
	return $node->safe_psql('postgres', q{
		SELECT sum(coalesce(idx_scan, 0) + coalesce(seq_scan, 0))
		FROM pg_stat_user_tables WHERE schemaname = 'invoice_seq'});
}
# the sweep's last pass is counted once the sequencer has been idle a moment
sleep(2);
my $before = scans();
sleep(5);
my $idle = scans() - $before;
note "index scans of the ledger by an idle sequencer with 20,300 chains, in 5 s: $idle";
cmp_ok($idle, '<', 100,
	'an idle sequencer does not look at every chain (a sweep would scan each of 20,300)');
$node->safe_psql('postgres', q{
	SELECT invoice_seq.next_invoice_no('m17');
	SELECT invoice_seq.confirm_invoice_no('m18', invoice_seq.reserve_invoice_no('m18'));});
ok($node->poll_query_until('postgres', $all_linked),
	'a number issued and one confirmed since are sealed, without a sweep');

# --- (c) a cold load reads above the chain head only ------------------------

# Rows of the extension's tables read by $sql, run first in a transaction
# (the statistics of the transaction so far count them).
sub rows_read
{
	my ($sql) = @_;
	my @out = split /\n/, $node->safe_psql('postgres', qq{
		BEGIN;
		$sql;
		SELECT sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))
		FROM pg_stat_xact_user_tables WHERE schemaname = 'invoice_seq';
		COMMIT;});
	return $out[-1];
}

$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('small');
	SELECT invoice_seq.create_series('big');
	SELECT invoice_seq.create_series('tail');
	SELECT count(invoice_seq.next_invoice_no('small')) FROM generate_series(1, 1000);
	SELECT count(invoice_seq.next_invoice_no('tail')) FROM generate_series(1, 1000);
});
$node->safe_psql('postgres',
	'SELECT count(invoice_seq.next_invoice_no(\'big\')) FROM generate_series(1, 50000)')
  for 1 .. 20;
$node->safe_psql('postgres', q{
	SELECT count(*) FROM invoice_seq.chain_head('small');
	SELECT count(*) FROM invoice_seq.chain_head('big');
	SELECT count(*) FROM invoice_seq.chain_head('tail');
	ALTER SYSTEM SET invoice_seq.sealing = off;
	SELECT pg_reload_conf();
});
# an unsealed tail of 5,000 numbers
$node->safe_psql('postgres',
	"SELECT count(invoice_seq.next_invoice_no('tail')) FROM generate_series(1, 5000)");
$node->restart;
InvoiceSeqTest::wait_for_sequencer($node);

my $small = rows_read("SELECT invoice_seq.next_invoice_no('small')");
my $big = rows_read("SELECT invoice_seq.next_invoice_no('big')");
my $tail = rows_read("SELECT invoice_seq.next_invoice_no('tail')");
note "rows read by the first number after a restart: 1,000 sealed $small, "
  . "1,000,000 sealed $big, 1,000 sealed and 5,000 unsealed $tail";
cmp_ok($small, '<', 100, 'a cold load of a sealed series reads a few rows');
cmp_ok($big, '<=', $small + 20, 'and as few for 1,000,000 numbers as for 1,000');
cmp_ok($tail, '>=', 5000, 'an unsealed tail is read');
cmp_ok($tail, '<', 5000 + 100, 'but not the sealed history below it');
is($node->safe_psql('postgres', q{
	SELECT string_agg(s || ':' || n, ' ' ORDER BY s) FROM (
	    SELECT series AS s, max(invoice_no) AS n FROM invoice_seq.ledger
	    WHERE series IN ('small', 'big', 'tail') GROUP BY series) x}),
	'big:1000001 small:1001 tail:6001', 'each goes on after its highest number');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM invoice_seq.check_series('big')}), '0', 'check_series of big is empty');

done_testing();
