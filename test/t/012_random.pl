
# The randomized checker (test/perl/InvoiceSeqRandom.pm): random mixes of
# every operation from many sessions, faults, clock moves across days and
# periods, on a small allocator that evicts; the model of the contract
# checked after every round.  RANDOM_SECONDS bounds it (default 90);
# RANDOM_SEED replays a run's choices.  test/soak runs it for longer.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqRandom;
use InvoiceSeqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{RANDOM_SEED} || time;
my $seconds = $ENV{RANDOM_SECONDS} // 90;

my $node = InvoiceSeqTest::new_node('random', conf => qq{
invoice_seq.max_periods = 16
deadlock_timeout = '200ms'
invoice_seq.lock_timeout = '1s'
wal_writer_delay = '5s'
});
my $checker = InvoiceSeqRandom->new(node => $node, seed => $seed,
	sessions => $ENV{RANDOM_SESSIONS} // 6);
my $problems = $checker->run(seconds => $seconds);
is($problems, 0, "random checker, seed $seed: no problem found");

done_testing();
