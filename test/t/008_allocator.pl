
# The allocator in shared memory, under faults and at size:
#
# 1. kill -9 of a client backend while one-step calls and reservations made
#    outside a transaction block (both recorded in the caller's own
#    transaction) are in flight: after crash recovery the allocator is
#    rebuilt from the ledger; every number a client was answered with is in
#    the ledger, nothing is there twice, the ledger view is dense, and the
#    application's committed rows are exactly the issued one-step numbers.
# 2. A series of one million numbers: after a restart, the first call reads
#    the ledger (the time it takes is reported, not judged) and finds the
#    one number missing in the middle; once dense, it counts instead.
# 3. SERIALIZABLE applications confirm in their own transactions without
#    serialization failures, as the same flow with nextval() has none.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = InvoiceSeqTest::new_node('alloc');
$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('S', time_zone => 'UTC');
	CREATE TABLE app_invoice (no bigint PRIMARY KEY, client text NOT NULL);
});

# 1. kill -9 with both kinds of caller-side numbering in flight.
sub one_step_script
{
	my ($client, $n) = @_;
	my $sql = "SET application_name = 'alloc_client';\n";
	for my $i (1 .. $n)
	{
		$sql .= $i % 3 == 0
		  ? "BEGIN;\nSELECT 'rollback', invoice_seq.next_invoice_no('S');\nROLLBACK;\n"
		  : "INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('S'), '$client')"
		  . " RETURNING 'commit', no;\n";
	}
	return $sql;
}

my $n = 5000;
my @one_step = InvoiceSeqTest::start_scripts($node, 'os',
	map { one_step_script("os-$_", $n) } 1 .. 4);
my @reserving = InvoiceSeqTest::start_clients($node, 'S', 4, $n,
	keyed => 1, tag => 'auto', paths => 'auto');
InvoiceSeqTest::wait_for_entries($node, 'S', 1000);
my $victim = '';
for (1 .. 100)
{
	$victim = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		WHERE application_name = 'alloc_client' AND state <> 'idle' LIMIT 1});
	last if $victim ne '';
}
die 'no one-step client was busy' if $victim eq '';
kill 'KILL', $victim;
InvoiceSeqTest::finish_clients(@one_step, @reserving);
InvoiceSeqTest::wait_for_sequencer($node);
ok(InvoiceSeqTest::killed_by_sigkill($node, $victim),
	'kill -9: the server went through crash recovery');

my $keyed = InvoiceSeqTest::answers(@reserving);
my @committed = grep { $_->{key} eq 'commit' } @{ InvoiceSeqTest::answers(@one_step) };
cmp_ok(scalar(@$keyed) + scalar(@committed), '<', 4 * $n + 4 * $n * 2 / 3,
	'kill -9: the fault struck while the load ran');
InvoiceSeqTest::check_invariants($node, 'S',
	[ @$keyed, map { { client => 'one-step', key => '', number => $_->{number} } } @committed ],
	'after kill -9');
is(InvoiceSeqTest::issued_mismatches($node, 'S'), '0',
	"after kill -9: the application's rows are exactly the issued numbers");
my @retried = InvoiceSeqTest::check_key_retries($node, 'S', $keyed, 'after kill -9', $n);

# The numbers left free by the crash go to the next callers, lowest first.
my $free = $node->safe_psql('postgres', q{
	SELECT string_agg(invoice_no::text, ',' ORDER BY invoice_no)
	FROM invoice_seq.ledger WHERE series = 'S' AND status = 'recyclable'});
my @drained;
for (split /,/, $free // '')
{
	push @drained, $node->safe_psql('postgres',
		"INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('S'), 'drain') RETURNING no");
}
is(join(',', @drained), $free // '', 'after kill -9: the free numbers are handed out, lowest first');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE status = 'recyclable'),
		       count(*) = max(invoice_no)
		FROM invoice_seq.ledger WHERE series = 'S'}),
	'0|t', 'after kill -9: then no number is free, and the ledger is dense');

# 2. One million numbers, one missing in the middle.
$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('BIG');
	INSERT INTO invoice_seq.ledger_entry
	    (series_id, period, invoice_no, display_no, status, reserved_at, reserved_by,
	     confirmed_at, confirmed_by)
	SELECT (SELECT id FROM invoice_seq.series_def WHERE name = 'BIG'), '', n, n::text,
	       'issued', now(), 'load', now(), 'load'
	FROM generate_series(1, 1000000) n WHERE n <> 500000;
	VACUUM ANALYZE invoice_seq.ledger_entry;
});
$node->restart;
InvoiceSeqTest::wait_for_sequencer($node);
my $t0 = time;
my $first = $node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('BIG')");
my $first_ms = (time - $t0) * 1000;
my $t1 = time;
my $second = $node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('BIG')");
my $second_ms = (time - $t1) * 1000;
is("$first,$second", '500000,1000001',
	'one million numbers: after a restart the missing one comes first, then the next');
diag sprintf('one million numbers, one missing in the middle: first call after a restart %.0f ms, second %.0f ms (psql included)',
	$first_ms, $second_ms);

# Now dense (the usual state after a clean shutdown): restart again.
$node->restart;
InvoiceSeqTest::wait_for_sequencer($node);
$t0 = time;
$first = $node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('BIG')");
$first_ms = (time - $t0) * 1000;
is($first, '1000002', 'one million numbers, dense: after a restart numbering goes on');
diag sprintf('one million numbers, dense: first call after a restart %.0f ms (psql included)',
	$first_ms);

# 3. SERIALIZABLE: the same flow with nextval() and with invoice_seq, side
# by side; count the transactions that fail.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET default_transaction_isolation = 'serializable';
	SELECT pg_reload_conf();
	CREATE SEQUENCE app_seq;
	CREATE TABLE app_ssi (no bigint PRIMARY KEY, kind text NOT NULL, note text);
	SELECT invoice_seq.create_series('SSI');
});
my $dir = PostgreSQL::Test::Utils::tempdir;
PostgreSQL::Test::Utils::append_to_file("$dir/nextval.sql", q{
SELECT nextval('app_seq') AS no \gset
BEGIN;
INSERT INTO app_ssi VALUES (:no, 'nextval', 'an invoice');
COMMIT;
});
PostgreSQL::Test::Utils::append_to_file("$dir/invoice_seq.sql", q{
SELECT invoice_seq.reserve_invoice_no('SSI') AS no \gset
BEGIN;
INSERT INTO app_ssi VALUES (-:no, 'invoice_seq', 'an invoice');
SELECT invoice_seq.confirm_invoice_no('SSI', :no, 'ext-' || :no);
COMMIT;
});

sub failures
{
	my ($script) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'pgbench', '-n', '-c', '4', '-j', '2', '-t', '500',
			'-f', "$dir/$script", $node->connstr('postgres')
		],
		'>', \$out, '2>', \$err);
	my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
	my ($failed) = $out =~ /number of failed transactions: (\d+)/;
	$failed //= ($err =~ /could not serialize/ ? 'aborted' : 0);
	note "$script: $out$err" unless defined $processed;
	return ($processed // 0, $failed);
}
my ($n_next, $f_next) = failures('nextval.sql');
my ($n_iseq, $f_iseq) = failures('invoice_seq.sql');
is($f_next, 0, "SERIALIZABLE, nextval flow: no failed transaction ($n_next done)");
is($f_iseq, 0, "SERIALIZABLE, reserve and confirm: no failed transaction ($n_iseq done)");
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM invoice_seq.ledger WHERE series = 'SSI' AND status = 'issued'}),
	$n_iseq, 'SERIALIZABLE: every confirmed number is issued');

# 4. invoice_seq.max_periods is a soft bound: a transaction that holds
# numbers of more periods than it takes them all, and its rollback gives
# every one back; idle entries beyond the bound are evicted, and read again
# on their next use.
$node->append_conf('postgresql.conf', 'invoice_seq.max_periods = 16');
$node->restart;
InvoiceSeqTest::wait_for_sequencer($node);
$node->safe_psql('postgres',
	"SELECT invoice_seq.create_series('M' || i) FROM generate_series(1, 216) i");
is( $node->safe_psql('postgres', q{
		BEGIN;
		SELECT count(invoice_seq.next_invoice_no('M' || i)) FROM generate_series(1, 216) i;
		ROLLBACK;}),
	'216', 'max_periods = 16: one transaction takes numbers of 216 periods');
is( $node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT invoice_seq.next_invoice_no('M' || i)::text, ',')"
		  . " FROM generate_series(1, 216) i"),
	'1', 'max_periods: after its rollback, every period hands out its first number');
my @seconds = map {
	$node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('M$_')")
} (1 .. 16, 200 .. 216);
is(join(',', @seconds), join(',', ('2') x 33),
	'max_periods: every period, evicted or not, goes on from its ledger');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM invoice_seq.ledger l
		WHERE l.series LIKE 'M%' AND l.status = 'issued'}),
	216 + 33, 'max_periods: the ledger has exactly the numbers handed out');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM generate_series(1, 216) i,
		     invoice_seq.check_series('M' || i)}),
	'0', 'max_periods: check_series finds no gap in any of them');

$node->stop;
done_testing();
