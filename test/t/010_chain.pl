
# The legal record holds against what SQL cannot stop: someone editing the
# ledger's data files.
#
#  1. The sequencer seals in the background; chain_head() is the published
#     head.
#  2. The export verifies with tools/verify_chain, without a database; an
#     edited or truncated export, or a head that is not in it, fails.
#  3. One byte of a sealed entry is changed in the heap file, the server
#     restarted: verify_series() names that number.
#  4. A sealed entry's tuple is removed from the heap file (its line
#     pointer marked unused): verify_series() reports the gap.
#  5. A dump restored into a new database verifies, with the same head.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = "$FindBin::RealBin/../../tools/verify_chain";
my $node = InvoiceSeqTest::new_node('chain', no_checksums => 1);

$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('T', format => 'T-{n:6}');
	SELECT invoice_seq.create_series('U', format => 'U-{n:6}');
	SELECT invoice_seq.next_invoice_no('T', sha256(('invoice ' || i)::bytea))
	FROM generate_series(1, 20) i;
	SELECT invoice_seq.next_invoice_no('U') FROM generate_series(1, 20);
	SELECT invoice_seq.reserve_invoice_no('T', 'k-21');
	SELECT invoice_seq.void_invoice_no('T', 21, 'rejected by the integrator');
});

# 1. Background sealing: the sequencer links both chains by itself.
ok( $node->poll_query_until('postgres',
		'SELECT count(*) = 41 FROM invoice_seq.ledger_link'),
	'the sequencer seals every final entry in the background');
my $head = $node->safe_psql('postgres',
	"SELECT invoice_no || ':' || link FROM invoice_seq.chain_head('T')");
like($head, qr/^21:[0-9a-f]{64}$/, 'chain_head gives the highest sealed number and its link');
is($node->safe_psql('postgres', "SELECT count(*) FROM invoice_seq.verify_series('T')"),
	'0', 'verify_series: the chain is intact');

# 2. The export, checked without a database.
my $dir = PostgreSQL::Test::Utils::tempdir();
sub export_to
{
	my ($file, $format) = @_;
	my $lines = $node->safe_psql('postgres',
		"SELECT invoice_seq.export_series('T', format => '$format')");
	PostgreSQL::Test::Utils::append_to_file($file, "$lines\n");
	return $lines;
}
sub verifier_ok
{
	my ($file, @args) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ 'python3', $verifier, $file, @args ],
		'>', \$stdout, '2>', \$stderr);
	return ($ok, $stdout . $stderr);
}
my $jsonl = export_to("$dir/t.jsonl", 'jsonl');
my ($ok, $out) = verifier_ok("$dir/t.jsonl", '--head', $head);
ok($ok, 'verify_chain passes on the export, with the published head') or diag $out;
like($out, qr/ok, 21 entries/, 'verify_chain counts every entry');
export_to("$dir/t.csv", 'csv');
($ok, $out) = verifier_ok("$dir/t.csv");
ok($ok, 'verify_chain passes on the CSV export') or diag $out;

(my $edited = $jsonl) =~ s/display_no T-000007/display_no T-000070/;
isnt($edited, $jsonl, 'the export has entry 7 to edit');
PostgreSQL::Test::Utils::append_to_file("$dir/edited.jsonl", "$edited\n");
($ok, $out) = verifier_ok("$dir/edited.jsonl");
ok(!$ok, 'verify_chain fails on an edited export');
like($out, qr/invoice_no 7\).*hashes to/, 'verify_chain names the edited entry');

(my $truncated = $jsonl) =~ s/\A[^\n]*\n//;
PostgreSQL::Test::Utils::append_to_file("$dir/truncated.jsonl", "$truncated\n");
($ok, $out) = verifier_ok("$dir/truncated.jsonl");
ok(!$ok, 'verify_chain fails on an export without its first entry');

($ok, $out) = verifier_ok("$dir/t.jsonl", '--head', '21:' . ('0' x 64));
ok(!$ok, 'verify_chain fails when the published head is not in the export');

# 3 and 4 edit the heap file of the ledger with the server stopped.
my $datadir = $node->data_dir;
my $file = $datadir . '/' . $node->safe_psql('postgres',
	"SELECT pg_relation_filepath('invoice_seq.ledger_entry')");
my $tid = $node->safe_psql('postgres', q{
	SELECT e.ctid FROM invoice_seq.ledger_entry e
	JOIN invoice_seq.series_def s ON s.id = e.series_id
	WHERE s.name = 'U' AND e.invoice_no = 9});
my ($block, $offset) = $tid =~ /^\((\d+),(\d+)\)$/ or die "bad ctid $tid";
$node->stop;

open my $fh, '+<:raw', $file or die "$file: $!";
my $heap = do { local $/; <$fh> };

# 3. One byte of T's sealed entry 5: "T-000005" becomes "T-000006".
my $at = index($heap, 'T-000005');
ok($at >= 0 && index($heap, 'T-000005', $at + 1) < 0,
	'the heap holds entry 5 of T once');
seek($fh, $at + 7, 0);
print $fh '6';

# 4. U's entry 9: its line pointer (after the 24-byte page header) unused.
seek($fh, $block * 8192 + 24 + ($offset - 1) * 4, 0);
print $fh "\0\0\0\0";
close $fh;
$node->start;

is( $node->safe_psql('postgres',
		"SELECT invoice_no || ' ' || problem FROM invoice_seq.verify_series('T')"),
	'5 broken_link', 'a byte changed in the heap file: verify_series names that number');
is( $node->safe_psql('postgres',
		"SELECT invoice_no || ' ' || problem FROM invoice_seq.verify_series('U')"),
	'9 gap', 'a tuple removed from the heap file: verify_series reports the gap');

# 5. Dump and restore: the chain verifies in the restored database, with
# the same head (on a clean node, not the one edited above).
my $clean = InvoiceSeqTest::new_node('clean');
$clean->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('R', reset => 'yearly', format => 'R{YYYY}-{n}');
	SELECT invoice_seq.next_invoice_no('R', sha256(('r' || i)::bytea))
	FROM generate_series(1, 30) i;
	SELECT invoice_seq.reserve_invoice_no('R', 'r-31');
});
my $period = $clean->safe_psql('postgres',
	"SELECT period FROM invoice_seq.ledger WHERE series = 'R' LIMIT 1");
my $before = $clean->safe_psql('postgres',
	"SELECT invoice_no || ':' || link FROM invoice_seq.chain_head('R', '$period')");
my $dump = "$dir/chain.dump";
$clean->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $clean->connstr('postgres') ],
	'pg_dump');
$clean->safe_psql('postgres', 'CREATE DATABASE restored');
$clean->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $clean->connstr('restored'), $dump ],
	'pg_restore');
is( $clean->safe_psql('restored',
		"SELECT count(*) FROM invoice_seq.verify_series('R', '$period')"),
	'0', 'restored: the chain verifies');
is( $clean->safe_psql('restored',
		"SELECT invoice_no || ':' || link FROM invoice_seq.chain_head('R', '$period')"),
	$before, 'restored: the head is the same');
$clean->safe_psql('restored',
	"SELECT invoice_seq.confirm_invoice_no('R', 31, 'EXT-31', '$period')");
like( $clean->safe_psql('restored',
		"SELECT invoice_no FROM invoice_seq.chain_head('R', '$period')"),
	qr/^31$/, 'restored: the chain goes on');

$clean->stop;
$node->stop;
done_testing();
