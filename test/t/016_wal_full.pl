
# WAL disk full under load (issue 21).  pg_wal is on a small filesystem of
# its own, which test/run_all mounts (a tmpfs, INVOICE_SEQ_SMALL_FS, owned
# by the test user); the test fills it while clients reserve, inside and
# outside transaction blocks, and take one-step numbers.  The server stops
# (PANIC) when it cannot write WAL, and may not start again until there is
# room.  Then room is made, the server started, and: every number a client
# was answered with is in the ledger exactly once, the ledger is dense, no
# number was handed out twice, a retried key gets its number, and the
# one-step numbers issued are exactly the application's rows.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $fs = $ENV{INVOICE_SEQ_SMALL_FS};
die "INVOICE_SEQ_SMALL_FS is not set: test/run_all mounts a small filesystem for this test\n"
  unless $fs && -d $fs && -w $fs;
my $waldir = "$fs/pg_wal-$$";
my $filler = "$fs/filler-$$";

# 1 MB segments, and no checkpoint that would recycle them: WAL grows until
# the filesystem is full.
my $node = InvoiceSeqTest::new_node('walfull',
	init => { extra => [ '--waldir', $waldir, '--wal-segsize', '1' ] },
	conf => "min_wal_size = 2MB\nmax_wal_size = 4GB\ncheckpoint_timeout = 1h");
$node->safe_psql('postgres', q{
	SELECT invoice_seq.create_series('S');
	SELECT invoice_seq.create_series('O');
	CREATE TABLE app_invoice (no bigint PRIMARY KEY);
});

my $nclients = 6;
my $nrequests = 20000;
my @clients = InvoiceSeqTest::start_clients($node, 'S', $nclients, $nrequests,
	keyed => 1, tag => 'w');
my @one_step = InvoiceSeqTest::start_scripts($node, 'o',
	map { join '', map { "INSERT INTO app_invoice VALUES (invoice_seq.next_invoice_no('O')) RETURNING no;\n" } 1 .. $nrequests } 1 .. 2);
InvoiceSeqTest::wait_for_entries($node, 'S', 500);

# Fill the filesystem; the server stops when its next WAL segment finds no room.
system('dd', 'if=/dev/zero', "of=$filler", 'bs=64k', 'status=none');
ok(-s $filler, 'the WAL filesystem is full');
my $stopped = 0;
for (1 .. 600)
{
	my ($ret) = $node->psql('postgres', 'SELECT 1', on_error_stop => 0);
	if ($ret != 0) { $stopped = 1; last; }
	sleep 0.1;
}
ok($stopped, 'the server stopped taking requests when pg_wal was full');
like(slurp_file($node->logfile), qr/No space left on device/, 'because WAL could not be written');

# Room again; start the server if it gave up.
unlink $filler;
$node->stop('immediate', fail_ok => 1);
$node->start;
InvoiceSeqTest::finish_clients(@clients, @one_step);
InvoiceSeqTest::wait_for_sequencer($node);

my $answers = InvoiceSeqTest::answers(@clients);
cmp_ok(scalar(@$answers), '<', $nclients * $nrequests, 'the full disk cut the load short');
note sprintf('%d reservations answered before the disk was full', scalar(@$answers));
InvoiceSeqTest::check_invariants($node, 'S', $answers, 'after the WAL disk was full');
InvoiceSeqTest::check_key_retries($node, 'S', $answers, 'w', $nrequests);

my @issued = grep { /^\d+$/ } map { InvoiceSeqTest::output_lines($_) } @one_step;
is(InvoiceSeqTest::issued_mismatches($node, 'O', one_step => 1), '0',
	'the one-step numbers issued are exactly the application\'s rows');
my %rows = map { $_ => 1 } split /\n/, $node->safe_psql('postgres', 'SELECT no FROM app_invoice');
is(scalar(grep { !$rows{$_} } @issued), 0,
	scalar(@issued) . ' one-step numbers answered, each in the application\'s table');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT 1 FROM invoice_seq.ledger WHERE series = 'O'
	                      HAVING count(*) <> coalesce(max(invoice_no), 0)) d}),
	'0', 'the one-step series is dense');
is($node->safe_psql('postgres', "SELECT count(*) FROM invoice_seq.check_series()"),
	'0', 'check_series is empty');
is($node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('O') > 0"),
	't', 'numbering goes on');

$node->stop;
done_testing();
