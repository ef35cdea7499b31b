
# Where paths meet, the cases of issue 19 that need the real clock, a
# restart, a crash or a server setting:
#
# 1. Midnight under an admin's lock (case 5): numbers that waited for an
#    alter_series() held across the series' midnight are dated when they
#    are taken, after the wait, so the numbers of the new day never follow
#    one dated the day before.
# 2. A hole after a restart (case 6): a number freed on day 1 below a number
#    issued on day 1, with a void of day 2 just above it, is voided on day
#    2, not issued after the higher number.
#    A hole below a reservation after a restart (found by the randomized
#    checker on 18, seed 1796257417): the reservation is confirmed on day
#    1, so the hole below it is voided on day 2, not issued.
# 3. check_series() and verify_series() while holders commit (case 8): a
#    number whose transaction commits while they read is never a gap.
# 4. A small allocator (case 9): a monthly series with free numbers in more
#    earlier months than invoice_seq.max_periods keeps numbering, and its
#    old periods are swept over several transactions.
# 5. synchronous_commit = off (the note on durability): a one-step number
#    whose COMMIT returned survives an immediate shutdown.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use InvoiceSeqTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);

my $node = InvoiceSeqTest::new_node('paths');

# A psql process running commands in the background; its output is read
# once it ends.
sub background
{
	my (@commands) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-qtA', '-d', $node->connstr('postgres'),
		  map { ('-c', $_) } @commands ],
		'>', \$out, '2>', \$err);
	return { handle => $h, out => \$out, err => \$err };
}

sub finish
{
	my ($bg) = @_;
	$bg->{handle}->finish;
	return ${ $bg->{out} };
}

# 1. Midnight.  A POSIX time zone (local time = UTC minus the offset, to
#    the minute) whose midnight falls on the first minute at least 10
#    seconds from now.
{
	my $midnight = 60 * (int((time + 10) / 60) + 1);
	my $zone = 'XXX+' . strftime('%H:%M', gmtime($midnight));
	$node->safe_psql('postgres',
		"SELECT invoice_seq.create_series('MID', time_zone => '$zone')");
	sleep(0.1) while time < $midnight - 7;
	my $admin = background(
		'BEGIN',
		"SELECT invoice_seq.alter_series('MID', stale_after => '1 day')",
		'SELECT pg_sleep(10)', 'COMMIT');
	sleep(1);
	# before midnight: it waits for the admin's lock
	my @early = map { background("SELECT invoice_seq.next_invoice_no('MID')") } 1 .. 2;
	sleep(0.1) while time < $midnight + 1;
	# after midnight: they wait too, and the lock's release lets all go
	my @late = map { background("SELECT invoice_seq.next_invoice_no('MID')") } 1 .. 10;
	finish($_) for $admin, @early, @late;
	my $days = $node->safe_psql('postgres', qq{
		SELECT count(DISTINCT (confirmed_at AT TIME ZONE '$zone')::date)
		FROM invoice_seq.ledger WHERE series = 'MID'});
	is($days, '1', 'midnight: every number that waited is dated after the wait, on the new day');
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM invoice_seq.check_series('MID') WHERE problem = 'chronology'}),
		'0', 'midnight: check_series finds no chronology problem');
}

# The ledger of $series is $statuses ("<no> <status>, ..."), and
# check_series finds no problem in it.
sub hole_voided
{
	my ($series, $statuses, $case, $what) = @_;
	is($node->safe_psql('postgres', qq{
		SELECT string_agg(invoice_no || ' ' || status, ', ' ORDER BY invoice_no)
		FROM invoice_seq.ledger WHERE series = '$series'}),
		$statuses, "$case: $what");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM invoice_seq.check_series('$series')"),
		'0', "$case: check_series finds no problem");
	return;
}

# 2. A hole after a restart.  Day 1: T1 holds 1 and T2 holds 2 while 3 is
#    issued; T2 rolls back.  Day 2: the next call voids 2 (too old) and
#    issues 4; then T1 rolls back.  After a restart, 1 is a hole below the
#    void of day 2; 3 is dated day 1, so 1 must be voided on day 2.
{
	$node->safe_psql('postgres', "SELECT invoice_seq.create_series('CV2')");
	my $t1 = background("SET invoice_seq.test_clock = '2026-03-02 10:00+00'",
		'BEGIN', "SELECT invoice_seq.next_invoice_no('CV2')", 'SELECT pg_sleep(4)', 'ROLLBACK');
	sleep(0.5);
	my $t2 = background("SET invoice_seq.test_clock = '2026-03-02 10:01+00'",
		'BEGIN', "SELECT invoice_seq.next_invoice_no('CV2')", 'SELECT pg_sleep(1.5)', 'ROLLBACK');
	sleep(0.5);
	$node->safe_psql('postgres', q{
		SET invoice_seq.test_clock = '2026-03-02 10:02+00';
		SELECT invoice_seq.next_invoice_no('CV2')});
	finish($t2);
	$node->safe_psql('postgres', q{
		SET invoice_seq.test_clock = '2026-03-03 09:00+00';
		SELECT invoice_seq.next_invoice_no('CV2')});
	finish($t1);
	$node->restart;
	my $issued = $node->safe_psql('postgres', q{
		SET invoice_seq.test_clock = '2026-03-03 09:30+00';
		SELECT invoice_seq.next_invoice_no('CV2')});
	is($issued, '5', 'after a restart: a day-1 hole below a day-1 number is not issued on day 2');
	hole_voided('CV2', '1 voided, 2 voided, 3 issued, 4 issued, 5 issued',
		'after a restart', 'the hole is voided instead');
}

# 2b. A hole below a reservation, after a restart.  Day 1: 1 is issued; T1
#    holds 2 while 3 is reserved; T1 rolls back.  After a restart a take
#    that rolls back loads 2 as free below the reservation.  3 is then
#    confirmed on day 1; on day 2, 2 must be voided, not issued below a
#    number of day 1.  (A load that gave the hole a limit from the issued
#    numbers above only, none here, issued it.)
{
	$node->safe_psql('postgres', q{
		SELECT invoice_seq.create_series('CV3');
		SET invoice_seq.test_clock = '2026-03-02 10:00+00';
		SELECT invoice_seq.next_invoice_no('CV3')});
	my $t1 = background("SET invoice_seq.test_clock = '2026-03-02 10:01+00'",
		'BEGIN', "SELECT invoice_seq.next_invoice_no('CV3')", 'SELECT pg_sleep(1.5)', 'ROLLBACK');
	sleep(0.5);
	is($node->safe_psql('postgres', q{
		SET invoice_seq.test_clock = '2026-03-02 10:02+00';
		SELECT invoice_seq.reserve_invoice_no('CV3', 'cv3-order')}),
		'3', 'hole below a reservation: 3 is reserved while 2 is held');
	finish($t1);
	$node->restart;
	InvoiceSeqTest::wait_for_sequencer($node);
	# the first take after the restart loads the entry, before the confirm
	is($node->safe_psql('postgres', q{
		BEGIN;
		SET LOCAL invoice_seq.test_clock = '2026-03-02 10:30+00';
		SELECT invoice_seq.next_invoice_no('CV3');
		ROLLBACK}),
		'2', 'hole below a reservation: after the restart, 2 is free');
	$node->safe_psql('postgres', q{
		SET invoice_seq.test_clock = '2026-03-02 11:00+00';
		SELECT invoice_seq.confirm_invoice_no('CV3', 3, 'ext-3')});
	is($node->safe_psql('postgres', q{
		SET invoice_seq.test_clock = '2026-03-03 09:00+00';
		SELECT invoice_seq.next_invoice_no('CV3')}),
		'4', 'hole below a reservation: on day 2 the next number is new');
	hole_voided('CV3', '1 issued, 2 voided, 3 issued, 4 issued',
		'hole below a reservation', 'the hole is voided');
}

# 3. Holders that commit while check_series() and verify_series() read a
#    large series.
sub problems_while_holders_commit
{
	my ($count_problems, $tries) = @_;
	my $problems = 0;
	for my $try (1 .. $tries)
	{
		my $holder = background('BEGIN', "SELECT invoice_seq.next_invoice_no('BIG')",
			'SELECT pg_sleep(0.6)', 'COMMIT');
		sleep(0.3);
		$node->safe_psql('postgres', "SELECT invoice_seq.next_invoice_no('BIG')");
		$problems += $node->safe_psql('postgres', $count_problems);
		finish($holder);
	}
	return $problems;
}

{
	$node->safe_psql('postgres', q{
		SELECT invoice_seq.create_series('BIG');
		SELECT count(invoice_seq.next_invoice_no('BIG')) FROM generate_series(1, 200000)});
	is(problems_while_holders_commit(q{
		SELECT count(*) FROM invoice_seq.check_series('BIG') WHERE problem = 'gap'}, 5),
		0, 'check_series: no false gap in 5 tries with a holder committing meanwhile');
	$node->safe_psql('postgres', q{SELECT * FROM invoice_seq.chain_head('BIG')});
	is(problems_while_holders_commit(q{
		SELECT count(*) FROM invoice_seq.verify_series('BIG')}, 5),
		0, 'verify_series: no false gap in 5 tries with a holder committing meanwhile');
}

# 4. invoice_seq.max_periods = 16, and free numbers in 20 earlier months.
{
	$node->append_conf('postgresql.conf', 'invoice_seq.max_periods = 16');
	$node->restart;
	$node->safe_psql('postgres', q{
		SELECT invoice_seq.create_series('SW', reset => 'monthly', format => 'SW{YYYY}{MM}-{n}')});
	for my $m (1 .. 20)
	{
		my $clock = sprintf("'%04d-%02d-10 12:00+00'", 2024 + int(($m - 1) / 12), ($m - 1) % 12 + 1);
		# 1 is taken in a transaction that rolls back, while the sequencer
		# commits 2, which is then confirmed
		$node->safe_psql('postgres', qq{
			SET invoice_seq.test_clock = $clock;
			BEGIN;
			SELECT invoice_seq.next_invoice_no('SW');
			SELECT invoice_seq.reserve_invoice_no('SW');
			ROLLBACK;
			SELECT invoice_seq.confirm_invoice_no('SW', 2, 'ext', period => to_char(timestamptz $clock AT TIME ZONE 'UTC', 'YYYY-MM'));
		});
	}
	$node->restart;
	my ($ok, $calls) = (1, 0);
	while ($calls < 10)
	{
		$calls++;
		my ($rc, $out, $err) = $node->psql('postgres', q{
			SET invoice_seq.test_clock = '2026-06-10 12:00+00';
			SELECT invoice_seq.next_invoice_no('SW')});
		if ($rc != 0)
		{
			diag $err;
			$ok = 0;
			last;
		}
		last if $node->safe_psql('postgres', q{
			SELECT count(*) FROM invoice_seq.ledger
			WHERE series = 'SW' AND period < '2026-06' AND status = 'recyclable'}) eq '0';
	}
	ok($ok, 'small allocator: every number of the new month is issued');
	cmp_ok($calls, '<=', 5, "small allocator: the 20 old months are swept in $calls transactions");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM invoice_seq.ledger
		WHERE series = 'SW' AND status = 'voided' AND voided_by = 'invoice_seq'}),
		'20', 'small allocator: every free number of an ended month is voided');
}

# 5. synchronous_commit = off: one-step numbers whose COMMIT returned, then
#    an immediate shutdown before the WAL writer's next flush.
{
	$node->append_conf('postgresql.conf', qq{
synchronous_commit = off
wal_writer_delay = 10000
});
	$node->restart;
	$node->safe_psql('postgres', q{
		SELECT invoice_seq.create_series('ASYNC');
		CREATE TABLE async_invoice (no bigint PRIMARY KEY)});
	my @answered;
	for (1 .. 20)
	{
		push @answered, $node->safe_psql('postgres', q{
			INSERT INTO async_invoice VALUES (invoice_seq.next_invoice_no('ASYNC')) RETURNING no});
	}
	$node->stop('immediate');
	$node->start;
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM invoice_seq.ledger WHERE series = 'ASYNC' AND status = 'issued'}),
		scalar(@answered),
		'synchronous_commit = off: every one-step number whose commit returned survives a crash');
	is($node->safe_psql('postgres', q{SELECT invoice_seq.next_invoice_no('ASYNC')}),
		scalar(@answered) + 1, 'synchronous_commit = off: the next number is new');
}

done_testing();
