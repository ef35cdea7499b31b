
=pod

=head1 NAME

InvoiceSeqRandom - a randomized checker of invoice_seq's promises

=head1 SYNOPSIS

  my $checker = InvoiceSeqRandom->new(node => $node, seed => 42);
  $checker->run(seconds => 120);

=head1 DESCRIPTION

Every path of invoice_seq is proven alone by the other suites; this one
drives them all at once, from many sessions, in random mixes, and checks
the state against a model of the contract after every round.

A run is a series of rounds.  Each round sets the clock (a test clock that
only moves forward, across days, months and years; or, in a midnight round,
the real clock at a series' midnight), lets the sessions run random
operations for a few seconds, may strike with one fault, then waits until
everything is quiet and checks:

=over

=item * every number a client saw under an idempotency key, as a result or
in a NOTICE of the code that took it, is that key's number in the ledger,
and a retry of the key returns it (a voided key is refused);

=item * no duplicate, and every (series, period) dense in the ledger view;

=item * the issued numbers are exactly the application's committed rows;

=item * chronology, in each chronological series;

=item * closed periods are closed, with their counts, and rolled-back
closings closed nothing;

=item * check_series() reports a gap exactly where one was made (a row put
in the ledger by hand above its top), and never otherwise, also while the
sessions run; verify_series() finds every chain whole;

=item * every error a statement raised is one the model expects of it, and
no statement runs longer than a bound (a livelock shows as a hang).

=back

The seed fixes every session's sequence of operations, the clock moves and
the faults of each round; the interleaving of the sessions follows from
timing.  RANDOM_SEED replays a run's choices.

=cut

package InvoiceSeqRandom;

use strict;
use warnings;

use DBI;
use DBD::Pg qw(:async);
use List::Util qw(max min);
use POSIX qw(strftime);
use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local ();

# A statement that runs longer than this is a hang (a livelock, or a wait
# nobody ends).  The longest legitimate wait is a lock held by a session
# that sleeps for at most MAX_SLEEP, times a few holders.
use constant HANG_SECONDS => 25;
use constant MAX_SLEEP => 0.8;
use constant STALE_AFTER => 2;

# SQLSTATEs every statement may get once a fault struck its round: the
# connection or the sequencer went away.
my %FAULT_STATES = map { $_ => 1 } qw(57P01 57P02 57P03 08006 08003 08000 40003 55000 XX000);

sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		node => $opts{node},
		seed => $opts{seed} // time,
		nsessions => $opts{sessions} // 6,
		failures => 0,
		keys => {},          # "series\tkey" => { number, period, state }
		closed => {},        # "series\tperiod" => last_no, committed closings
		restored => [],      # holes made by hand: [series, period, no]
		clock => undef,      # the test clock, epoch seconds; undef: real
		round => 0,
		counter => 0,
		owner_t => 'a',      # the tenant owning series T: 'a' or 'b'
		owner_change => undef,    # an uncommitted change of T's owner
		midnight_series => [],
		log => [],
	}, $class;
	$self->{rng_state} = $self->{seed};
	return $self;
}

# A small deterministic generator (a 32-bit xorshift), one per stream, so
# that a seed replays each session's choices whatever the timing.
sub _rng
{
	my ($seed) = @_;
	my $x = ($seed * 2654435761 + 1) % 4294967296 || 1;
	return sub {
		$x ^= ($x << 13) & 0xffffffff;
		$x ^= $x >> 17;
		$x ^= ($x << 5) & 0xffffffff;
		return $x / 4294967296;
	};
}

sub _pick
{
	my ($rng, @weighted) = @_;
	my $total = 0;
	$total += $weighted[ 2 * $_ + 1 ] for 0 .. $#weighted / 2;
	my $r = $rng->() * $total;
	for my $i (0 .. $#weighted / 2)
	{
		$r -= $weighted[ 2 * $i + 1 ];
		return $weighted[ 2 * $i ] if $r < 0;
	}
	return $weighted[-2];
}

sub fail_check
{
	my ($self, $what) = @_;
	$self->{failures}++;
	push @{ $self->{problems} }, "round $self->{round}: $what";
	diag "round $self->{round}: $what";
	return;
}

# --- set-up -------------------------------------------------------------

sub setup
{
	my ($self) = @_;
	my $node = $self->{node};
	$node->safe_psql('postgres', q{
		CREATE ROLE rnd_tenant_a NOLOGIN;
		CREATE ROLE rnd_tenant_b NOLOGIN;
		CREATE ROLE rnd_app_a LOGIN IN ROLE rnd_tenant_a;
		CREATE TABLE app_invoice (series text, period text, no bigint, kind text,
		                          PRIMARY KEY (series, period, no));
		GRANT ALL ON app_invoice TO PUBLIC;
		CREATE TABLE app_order (series text, key text, no bigint, amount int);
		GRANT ALL ON app_order TO PUBLIC;
		SELECT invoice_seq.create_series('N', stale_after => '2 seconds');
		SELECT invoice_seq.create_series('M', reset => 'monthly', format => 'M{YYYY}{MM}-{n}',
		                                 stale_after => '2 seconds');
		SELECT invoice_seq.create_series('Y', reset => 'yearly', format => 'Y{YYYY}-{n}',
		                                 chronological => false, stale_after => '2 seconds');
		SELECT invoice_seq.create_series('T', owner => 'rnd_tenant_a', stale_after => '2 seconds');
		-- a series with a history, for the audits to read while holders commit
		SELECT invoice_seq.create_series('B', stale_after => '2 seconds');
		-- the application's code that numbers, and shows the number
		CREATE FUNCTION take_no(s text, k text) RETURNS bigint LANGUAGE plpgsql
		AS $$BEGIN RETURN invoice_seq.reserve_invoice_no(s, k); END$$;
		CREATE PROCEDURE issue(s text, k text, fail boolean) LANGUAGE plpgsql AS $$
		DECLARE n bigint;
		BEGIN
		    n := take_no(s, k);
		    RAISE NOTICE 'shown % % %', s, k, n;
		    IF fail THEN ROLLBACK; ELSE COMMIT; END IF;
		END$$;
		CREATE FUNCTION retry_in_block(s text, k text) RETURNS bigint LANGUAGE plpgsql AS $$
		DECLARE first bigint; again bigint;
		BEGIN
		    first := invoice_seq.reserve_invoice_no(s, k);
		    RAISE NOTICE 'shown % % %', s, k, first;
		    BEGIN
		        again := invoice_seq.reserve_invoice_no(s, k);
		    EXCEPTION WHEN division_by_zero THEN NULL;
		    END;
		    RETURN again;
		END$$;
		CREATE FUNCTION number_order() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
		    NEW.no := invoice_seq.reserve_invoice_no(NEW.series, NEW.key);
		    RAISE NOTICE 'shown % % %', NEW.series, NEW.key, NEW.no;
		    IF NEW.amount <= 0 THEN
		        RAISE EXCEPTION 'the amount must be positive' USING ERRCODE = 'check_violation';
		    END IF;
		    RETURN NEW;
		END$$;
		CREATE TRIGGER number_order BEFORE INSERT ON app_order
		    FOR EACH ROW EXECUTE FUNCTION number_order();
	});
	$node->safe_psql('postgres', q{
		SET invoice_seq.test_clock = '2024-01-01 00:00+00';
		INSERT INTO app_invoice SELECT 'B', '', invoice_seq.next_invoice_no('B'), 'one-step'
		FROM generate_series(1, 50000);
	});
	$self->{series} = {
		N => { reset => 'never',   chronological => 1 },
		M => { reset => 'monthly', chronological => 1 },
		Y => { reset => 'yearly',  chronological => 0 },
		T => { reset => 'never',   chronological => 1, tenant => 1 },
		B => { reset => 'never',   chronological => 1 },
	};
	# the test clock starts at the beginning of 2024 and only moves on
	$self->{clock} = 1704067200 + 3600 * 9;
	return;
}

# --- sessions -----------------------------------------------------------

sub connect_session
{
	my ($self, $s) = @_;
	my $node = $self->{node};
	my $dsn = sprintf('dbi:Pg:host=%s;port=%s;dbname=postgres', $node->host, $node->port);
	my $dbh;
	for (1 .. 100)
	{
		$dbh = DBI->connect($dsn, $s->{role}, '',
			{ AutoCommit => 1, RaiseError => 0, PrintError => 0, PrintWarn => 1 });
		last if $dbh;
		sleep(0.2);
	}
	die "cannot connect as $s->{role}: $DBI::errstr" unless $dbh;
	$dbh->{pg_server_prepare} = 0;
	$dbh->do("SET application_name = 'rnd_$s->{id}'");
	$dbh->do("SET deadlock_timeout = '200ms'");
	$s->{dbh} = $dbh;
	return;
}

sub sessions
{
	my ($self) = @_;
	if (!$self->{sessions})
	{
		my @s;
		for my $i (0 .. $self->{nsessions})
		{
			# the last session is an application of tenant a
			push @s, {
				id => $i,
				role => $i == $self->{nsessions} ? 'rnd_app_a' : $self->{node}->{_user} // 'postgres',
				tenant => $i == $self->{nsessions},
				rng => _rng($self->{seed} * 131 + $i),
			};
		}
		$self->{sessions} = \@s;
	}
	return @{ $self->{sessions} };
}

# Start the next step of a session's script.
sub start_step
{
	my ($self, $s) = @_;
	my $step = $s->{script}->[ $s->{step} ];
	if (defined $step->{sleep})
	{
		$s->{wake} = time + $step->{sleep};
		$s->{busy} = 'sleep';
		return;
	}
	$s->{notices} = [];
	$s->{sth} = $s->{dbh}->prepare($step->{sql}, { pg_async => PG_ASYNC });
	$s->{started} = time;
	$self->{statements}++;
	if (!defined $s->{sth}->execute)
	{
		$self->finish_step($s, undef, $s->{dbh}->state, $s->{dbh}->errstr);
		return;
	}
	$s->{busy} = 'sql';
	return;
}

# A step ended, with rows or an error.  Its handler may end the script.
sub finish_step
{
	my ($self, $s, $rows, $state, $err) = @_;
	my $step = $s->{script}->[ $s->{step} ];
	my $op = $s->{op};
	my $verdict;

	$op->{notices} = [ @{ $op->{notices} // [] }, @{ $s->{notices} // [] } ];
	$self->note_shown($s->{notices});
	if (defined $rows && !@$rows && $step->{ok} && $self->{faulted} && !$s->{dbh}->ping)
	{
		$verdict = 'lost';
	}
	elsif (defined $rows)
	{
		$verdict = $step->{ok} ? $step->{ok}->($rows) : 'next';
	}
	else
	{
		$state //= '';
		$err //= '';
		$verdict = $step->{error} ? $step->{error}->($state, $err) : undef;
		if (!defined $verdict)
		{
			if ($self->{faulted} && ($FAULT_STATES{$state} || $err =~ /connection|terminat|server closed/i))
			{
				$verdict = 'lost';
			}
			else
			{
				$self->fail_check("$op->{name}: unexpected error $state: $err (in: $step->{sql})");
				$verdict = 'abort';
			}
		}
	}
	$s->{busy} = 0;
	if ($verdict eq 'next' && $s->{step} < $#{ $s->{script} })
	{
		$s->{step}++;
		$self->start_step($s);
		return;
	}
	if ($verdict eq 'lost' || !$s->{dbh}->ping)
	{
		$op->{lost} = 1;
		$s->{dbh} = undef;
	}
	elsif ($verdict ne 'next' && $verdict ne 'done')
	{
		# the script stops here: end its block, if it is in one
		local $SIG{__WARN__} = sub { };
		$s->{dbh}->do('ROLLBACK');
	}
	# what ran to its end, by kind, for the run's summary
	my ($kind) = $op->{name} =~ /^(\S+(?: \(\w+\))?)/;
	$self->{completed}->{$kind}++ if $verdict eq 'next';
	$op->{done}->($op, $verdict) if $op->{done};
	$s->{op} = undef;
	return;
}

# Poll a busy session; returns true if it is still busy.
sub poll_session
{
	my ($self, $s) = @_;
	return 0 unless $s->{busy};
	if ($s->{busy} eq 'sleep')
	{
		return 1 if time < $s->{wake};
		$s->{busy} = 0;
		$s->{step}++;
		$self->start_step($s);
		return 1;
	}
	local $self->{current} = $s;
	my $ready = $s->{dbh}->pg_ready;
	if (!$ready)
	{
		if (time - $s->{started} > HANG_SECONDS)
		{
			$self->fail_check("$s->{op}->{name}: a statement ran longer than "
				  . HANG_SECONDS . " s: $s->{script}->[$s->{step}]->{sql}");
			$s->{dbh}->pg_cancel;
			$s->{script}->[ $s->{step} ]->{error} = sub { 'abort' };
			$self->finish_step($s, undef, '57014', 'canceled: it hung');
			return $s->{busy} ? 1 : 0;
		}
		return 1;
	}
	my $rc = $s->{dbh}->pg_result;
	if (!defined $rc)
	{
		$self->finish_step($s, undef, $s->{dbh}->state, $s->{dbh}->errstr);
	}
	else
	{
		my $rows = $s->{sth}->{NUM_OF_FIELDS} ? $s->{sth}->fetchall_arrayref : [];
		$self->finish_step($s, $rows);
	}
	return $s->{busy} ? 1 : 0;
}

# A NOTICE "shown <series> <key> <number>": the application saw it.
sub note_shown
{
	my ($self, $notices) = @_;
	for my $n (@$notices)
	{
		next unless $n =~ /shown (\S+) (\S+) (\d+)/;
		$self->saw_key($1, $2, $3, 'shown');
	}
	return;
}

# A client learnt that key $k of series $series has number $no.
sub saw_key
{
	my ($self, $series, $k, $no, $how) = @_;
	my $entry = $self->{keys}->{"$series\t$k"} //= { number => $no, state => 'reserved' };
	if ($entry->{number} != $no)
	{
		$self->fail_check("key $k of $series: number $entry->{number}, then $no ($how):"
			  . " one key, two numbers");
	}
	return;
}

# --- operations ---------------------------------------------------------

sub new_key
{
	my ($self) = @_;
	return sprintf('k%d-%d', $self->{round}, ++$self->{counter});
}

# The period a number of $series takes now, by the model's clock.
sub period_now
{
	my ($self, $series) = @_;
	my $reset = $self->{series}->{$series}->{reset} // 'never';
	return '' if $reset eq 'never';
	my $t = $self->{clock} // time;
	return strftime($reset eq 'monthly' ? '%Y-%m' : '%Y', gmtime($t));
}

# Is the current period of $series closed, or being closed by a closing
# whose commit the driver has not seen yet?
sub closed_now
{
	my ($self, $series) = @_;
	my $id = $series . "\t" . $self->period_now($series);
	return exists $self->{closed}->{$id} || $self->{closing}->{$id};
}

# Errors any numbering statement may raise, given the model: a deadlock
# (40P01, also the one the sequencer cannot see), a closed period.
sub numbering_error
{
	my ($self, $series, $state, $err, $period) = @_;
	my $id = $series . "\t" . ($period // $self->period_now($series));
	return 'abort' if $state eq '40P01';
	return 'abort' if $state eq '55I04'
	  && (exists $self->{closed}->{$id} || $self->{closing}->{$id});
	return 'abort' if $state eq '55I01';
	# a series whose drop_series() returned, in a transaction that may commit
	return 'abort' if $state eq '42704' && $self->{series}->{$series}->{dropping};
	return undef;
}

sub sql_quote
{
	my ($v) = @_;
	$v =~ s/'/''/g;
	return "'$v'";
}

# A reservation of a new key, by one of the callers' paths.
sub op_reserve
{
	my ($self, $s, $series) = @_;
	my $k = $self->new_key;
	my $qs = sql_quote($series);
	my $path = _pick($s->{rng}, auto => 3, block => 3, function => 1, procedure => 1,
		do => 1, trigger => 1, retry_in_block => 1);
	my $ok = sub {
		my ($rows) = @_;
		$self->saw_key($series, $k, $rows->[0]->[0], $path) if @$rows && defined $rows->[0]->[0];
		return 'next';
	};
	my $error = sub { my ($st, $e) = @_; return $self->numbering_error($series, $st, $e); };
	my @script;
	if ($path eq 'auto')
	{
		@script = ({ sql => "SELECT invoice_seq.reserve_invoice_no($qs, '$k')", ok => $ok, error => $error });
	}
	elsif ($path eq 'block')
	{
		@script = (
			{ sql => 'BEGIN' },
			{ sql => "SELECT invoice_seq.reserve_invoice_no($qs, '$k')", ok => $ok, error => $error },
			{ sleep => $s->{rng}->() * MAX_SLEEP },
			{ sql => $s->{rng}->() < 0.5 ? 'COMMIT' : 'ROLLBACK' });
	}
	elsif ($path eq 'function')
	{
		@script = ({ sql => "SELECT take_no($qs, '$k')", ok => $ok, error => $error });
	}
	elsif ($path eq 'procedure')
	{
		my $fail = $s->{rng}->() < 0.5 ? 'true' : 'false';
		@script = ({ sql => "CALL issue($qs, '$k', $fail)", error => $error });
	}
	elsif ($path eq 'do')
	{
		@script = ({ sql => "DO \$\$BEGIN RAISE NOTICE 'shown % % %', $qs, '$k', take_no($qs, '$k');"
			  . " RAISE EXCEPTION 'failed after showing it' USING ERRCODE = 'P0001'; END\$\$",
			error => sub { my ($st, $e) = @_; return $st eq 'P0001' ? 'abort' : $error->($st, $e); } });
	}
	elsif ($path eq 'trigger')
	{
		my $amount = $s->{rng}->() < 0.5 ? -1 : 10;
		@script = ({ sql => "INSERT INTO app_order (series, key, amount) VALUES ($qs, '$k', $amount)",
			error => sub { my ($st, $e) = @_; return $st eq '23514' ? 'abort' : $error->($st, $e); } });
	}
	else
	{
		@script = ({ sql => "SELECT retry_in_block($qs, '$k')", ok => $ok, error => $error });
	}
	return { name => "reserve ($path) $series $k", script => \@script };
}

# A one-step number written with the application's row, committed, or
# rolled back (whole, or its savepoint); with a sleep while it is held, and
# once in a while held longer than stale_after.  The numbers whose commit
# returned are remembered: they must survive any fault.
sub op_one_step
{
	my ($self, $s, $series, $mode) = @_;
	my $qs = sql_quote($series);
	my $insert = "INSERT INTO app_invoice SELECT series, period, invoice_no, 'one-step'"
	  . " FROM invoice_seq.next_invoice($qs) RETURNING no, period";
	my $error = sub { my ($st, $e) = @_; return $self->numbering_error($series, $st, $e); };
	my $how = $mode // _pick($s->{rng}, auto => 3, commit => 2, rollback => 2, savepoint => 1,
		async => 1, hold => 1, late => 2);
	my @taken;
	my $take = sub {
		my ($rows) = @_;
		push @taken, [ $series, $rows->[0]->[1], $rows->[0]->[0] ];
		$s->{held} = { series => $series, no => $rows->[0]->[0], since => time }
		  if $how eq 'hold';
		return 'next';
	};
	my $committed = sub { push @{ $self->{committed} }, @taken; return 'next'; };
	my @script;
	if ($how eq 'auto')
	{
		@script = ({ sql => $insert, error => $error, ok => sub { $take->(@_); $committed->() } });
	}
	elsif ($how eq 'savepoint')
	{
		@script = ({ sql => 'BEGIN' }, { sql => $insert, error => $error, ok => $take },
			{ sql => 'SAVEPOINT s' }, { sql => $insert, error => $error },
			{ sleep => $s->{rng}->() * MAX_SLEEP },
			{ sql => 'ROLLBACK TO s' }, { sql => 'COMMIT', ok => $committed });
	}
	else
	{
		my $hold = $how eq 'hold' ? STALE_AFTER + 1.5
		  : $how eq 'straddle' ? 1 + 2 * $s->{rng}->() : $s->{rng}->() * MAX_SLEEP;
		$how = $s->{rng}->() < 0.6 ? 'rollback' : 'commit' if $how eq 'straddle';
		@script = ({ sql => 'BEGIN' });
		# commits that do not wait for the WAL flush, before a crash
		push @script, { sql => 'SET LOCAL synchronous_commit = off' } if $how eq 'async';
		# a transaction that numbers late, after other work
		push @script, { sleep => $s->{rng}->() * 2 * MAX_SLEEP } if $how eq 'late';
		push @script, { sql => $insert, error => $error, ok => $take }, { sleep => $hold },
		  $how eq 'rollback' ? { sql => 'ROLLBACK' } : { sql => 'COMMIT', ok => $committed };
	}
	return { name => "one-step ($how) $series", script => \@script,
		done => sub { $s->{held} = undef; } };
}

# A known key: confirm, void or retry it.
sub op_known_key
{
	my ($self, $s, $series) = @_;
	my @known = sort grep { /^\Q$series\E\t/ && $self->{keys}->{$_}->{state} ne 'lost' } keys %{ $self->{keys} };
	return $self->op_reserve($s, $series) unless @known;
	my @hot = sort grep { /^\Q$series\E\t/ } keys %{ $self->{hot} // {} };
	my $hot = @hot && $s->{rng}->() < 0.5;
	my $id = $hot ? $hot[ int($s->{rng}->() * @hot) ] : $known[ int($s->{rng}->() * @known) ];
	my $entry = $self->{keys}->{$id};
	my (undef, $k) = split /\t/, $id;
	my $qs = sql_quote($series);
	# a key being confirmed is retried, as a client that lost the answer would
	my $what = $hot ? 'retry' : _pick($s->{rng}, confirm => 3, void => 1, retry => 2);
	my $error = sub { my ($st, $e) = @_; return $self->numbering_error($series, $st, $e); };
	if ($what eq 'retry')
	{
		my $in_block = $s->{rng}->() < 0.5;
		my @script = (
			{ sql => "SELECT invoice_no, status FROM invoice_seq.reserve_invoice($qs, '$k')",
			  ok => sub {
				  my ($rows) = @_;
				  $self->saw_key($series, $k, $rows->[0]->[0], 'retry');
				  $self->fail_check("key $k of $series is voided, but a retry returned it")
					if $entry->{state} eq 'voided' && !$self->{faulted};
				  return 'next';
			  },
			  error => sub {
				  my ($st, $e) = @_;
				  return 'abort' if $st eq '55I01';
				  return $error->($st, $e);
			  } });
		unshift @script, { sql => 'BEGIN' } if $in_block;
		push @script, { sql => 'COMMIT' } if $in_block;
		return { name => "retry $series $k", script => \@script };
	}
	return $self->op_reserve($s, $series) if $entry->{state} ne 'reserved';
	my $period = sql_quote($entry->{period} // $self->key_period($series, $k));
	my $sql = $what eq 'confirm'
	  ? "INSERT INTO app_invoice SELECT $qs, $period, invoice_seq.confirm_invoice_no($qs, $entry->{number},"
	  . " 'ext-$k', $period), 'confirm' ON CONFLICT DO NOTHING"
	  : "SELECT invoice_seq.void_invoice_no($qs, $entry->{number}, 'rejected', $period)";
	# the row stays locked while the transaction sleeps; now and then
	# longer than the sequencer's lock_timeout
	my $hold = $s->{rng}->() < 0.4 ? 0 : $s->{rng}->() < 0.3 ? 1.5 : $s->{rng}->() * MAX_SLEEP;
	my @script = ({ sql => 'BEGIN' },
		{ sql => $sql,
		  error => sub {
			  my ($st, $e) = @_;
			  # voided, issued, closed, refused in date order: the application
			  # voids or gives up
			  return 'abort' if $st =~ /^55I0[2-5]$/;
			  return $error->($st, $e);
		  } },
		{ sql => 'SELECT 1', ok => sub { $self->{hot}->{$id} = 1; 'next' } },
		{ sleep => $hold },
		{ sql => 'COMMIT', ok => sub { $entry->{state} = $what eq 'confirm' ? 'issued' : 'voided'; 'next' } });
	return { name => "$what $series $k", script => \@script,
		done => sub { delete $self->{hot}->{$id}; } };
}

# The period of a key's number, as the ledger says.
sub key_period
{
	my ($self, $series, $k) = @_;
	my $entry = $self->{keys}->{"$series\t$k"};
	if (!defined $entry->{period})
	{
		my $dbh = $self->admin_dbh;
		($entry->{period}) = $dbh->selectrow_array(
			'SELECT period FROM invoice_seq.ledger WHERE series = ? AND idempotency_key = ?',
			undef, $series, $k);
	}
	return $entry->{period} // '';
}

# A number in a block, then a reservation in the same block: with an
# alter_series() queued between the two, the sequencer cannot serve it.
sub op_mixed_block
{
	my ($self, $s, $series) = @_;
	my $k = $self->new_key;
	my $qs = sql_quote($series);
	my $error = sub { my ($st, $e) = @_; return $self->numbering_error($series, $st, $e); };
	return { name => "one-step then reserve in a block $series $k", script => [
		{ sql => 'BEGIN' },
		{ sql => "INSERT INTO app_invoice SELECT series, period, invoice_no, 'one-step'"
			. " FROM invoice_seq.next_invoice($qs)", error => $error },
		{ sleep => $s->{rng}->() * MAX_SLEEP },
		{ sql => "SELECT invoice_seq.reserve_invoice_no($qs, '$k')", error => $error,
		  ok => sub { $self->saw_key($series, $k, $_[0]->[0]->[0], 'block'); 'next' } },
		{ sql => $s->{rng}->() < 0.5 ? 'COMMIT' : 'ROLLBACK' } ] };
}

# An administrator's change of a series, held for a while, committed or not.
sub op_alter
{
	my ($self, $s, $series) = @_;
	my $qs = sql_quote($series);
	# the same stale_after as before: a change the model need not follow
	return { name => "alter_series $series", script => [
		{ sql => 'BEGIN' },
		{ sql => "SELECT invoice_seq.alter_series($qs, stale_after => '" . STALE_AFTER . " seconds')",
		  error => sub { $_[0] eq '40P01' || ($_[0] eq '42704' && $self->{series}->{$series}->{dropping})
			  ? 'abort' : undef } },
		{ sleep => $s->{rng}->() * MAX_SLEEP },
		{ sql => $s->{rng}->() < 0.7 ? 'ROLLBACK' : 'COMMIT' } ] };
}

# Give series T to tenant b, or back to a, while tenant a's application
# numbers in it.  The change is known from the moment it is sent; "locked"
# once its alter_series() returned (the series lock is then held).
sub op_owner_change
{
	my ($self, $s) = @_;
	return undef if $self->{owner_change};
	my $to = $self->{owner_t} eq 'a' ? 'b' : 'a';
	my $commit = $s->{rng}->() < 0.5;
	my $change = { to => $to, locked => 0 };
	$self->{owner_change} = $change;
	$self->{owner_epoch}++;
	my $end = sub {
		$change->{ended} //= 'rolled back';
		$self->{owner_change} = undef;
		$self->{owner_epoch}++;
	};
	return { name => "give T to tenant $to", script => [
		{ sql => 'BEGIN' },
		{ sql => "SELECT invoice_seq.alter_series('T', owner => 'rnd_tenant_$to')",
		  ok => sub { $change->{locked} = 1; 'next' },
		  error => sub { $_[0] eq '40P01' ? 'abort' : undef } },
		{ sleep => $s->{rng}->() * MAX_SLEEP },
		{ sql => $commit ? 'COMMIT' : 'ROLLBACK',
		  ok => sub {
			  if ($commit)
			  {
				  $self->{owner_t} = $to;
				  $change->{ended} = 'committed';
			  }
			  'next';
		  } } ],
		done => $end };
}

# Tenant a's application reserves in T.  It may while T is its tenant's.
# A request sent once a change of T to tenant b holds the series lock waits
# for that change, and is refused if the change commits.
sub op_tenant
{
	my ($self, $s) = @_;
	my $change = $self->{owner_change};
	my $locked = $change && $change->{locked};
	my $owner = $self->{owner_t};
	my $epoch = $self->{owner_epoch} // 0;
	my $k = $self->new_key;
	my $in_block = $s->{rng}->() < 0.5;
	# judged at the end of the round, once every change has ended
	my $judge = sub {
		my ($got) = @_;
		push @{ $self->{tenant_results} }, { change => $change, locked => $locked,
			owner => $owner, epoch => $epoch, epoch_done => $self->{owner_epoch} // 0,
			got => $got };
	};
	my @script = ({ sql => "SELECT invoice_seq.reserve_invoice_no('T', '$k')",
		ok => sub { $judge->($_[0]->[0]->[0]); $self->saw_key('T', $k, $_[0]->[0]->[0], 'tenant'); 'next' },
		error => sub {
			my ($st, $e) = @_;
			if ($st eq '42501') { $judge->(undef); return 'abort'; }
			return $self->numbering_error('T', $st, $e);
		} });
	unshift @script, { sql => 'BEGIN' } if $in_block;
	push @script, { sql => 'COMMIT' } if $in_block;
	return { name => "tenant a reserves in T $k", script => \@script };
}

# The tenant's answers, judged once every change of T has ended.
sub judge_tenant
{
	my ($self) = @_;
	for my $r (@{ $self->{tenant_results} // [] })
	{
		my ($change, $got) = ($r->{change}, $r->{got});
		if ($r->{locked} && $change->{to} eq 'b' && ($change->{ended} // '') eq 'committed'
			&& $r->{epoch_done} <= $r->{epoch} + 1)
		{
			$self->fail_check("tenant a got number $got of T, which was given to tenant b while it waited")
			  if defined $got;
		}
		elsif (!$change && $r->{epoch_done} == $r->{epoch})
		{
			$self->fail_check("tenant a got number $got of T, which tenant b owns")
			  if defined $got && $r->{owner} eq 'b';
			$self->fail_check('tenant a was refused series T, which it owns')
			  if !defined $got && $r->{owner} eq 'a';
		}
	}
	$self->{tenant_results} = [];
	return;
}

# Close a period of M or Y: reconcile its reservations first, then close,
# try one number more in the same transaction, and commit or roll back.
sub op_close
{
	my ($self, $s) = @_;
	my $series = $s->{rng}->() < 0.5 ? 'M' : 'Y';
	my $period = $self->period_now($series);
	my $id = "$series\t$period";
	return undef if exists $self->{closed}->{$id};
	my $commit = $s->{rng}->() < 0.4;
	my $last;
	my @voided;
	return { name => "close_period $series $period", script => [
		{ sql => 'BEGIN' },
		{ sql => "SELECT idempotency_key FROM invoice_seq.ledger WHERE series = '$series'"
			. " AND period = '$period' AND status = 'reserved' AND idempotency_key IS NOT NULL",
		  ok => sub { @voided = map { $_->[0] } @{ $_[0] }; 'next' } },
		{ sql => "SELECT count(invoice_seq.void_invoice_no('$series', invoice_no, 'reconciled', '$period'))"
			. " FROM invoice_seq.ledger WHERE series = '$series' AND period = '$period' AND status = 'reserved'",
		  # a confirm, a void or another closing that committed since
		  error => sub { $_[0] eq '40P01' || $_[0] =~ /^55I0[234]$/ ? 'abort' : undef } },
		{ sql => "SELECT last_no FROM invoice_seq.close_period('$series', '$period', 'random close')",
		  ok => sub { $last = $_[0]->[0]->[0] // 0; $self->{closing}->{$id} = 1; 'next' },
		  error => sub {
			  my ($st, $e) = @_;
			  return 'abort' if $st eq '40P01' || $st =~ /^55I0[46]$/;
			  return undef;
		  } },
		{ sql => 'SAVEPOINT after_close' },
		{ sql => "SELECT invoice_seq.next_invoice_no('$series')",
		  ok => sub {
			  $self->fail_check("close_period $series $period: the closing transaction took number"
				  . " $_[0]->[0]->[0] after closing it");
			  'abort';
		  },
		  error => sub { $_[0] eq '55I04' ? 'next' : undef } },
		{ sql => 'ROLLBACK TO SAVEPOINT after_close' },
		{ sql => $commit ? 'COMMIT' : 'ROLLBACK',
		  ok => sub {
			  if ($commit)
			  {
				  $self->{closed}->{$id} = $last;
				  $self->{keys}->{"$series\t$_"}->{state} = 'voided'
					for grep { $self->{keys}->{"$series\t$_"} } @voided;
			  }
			  'next';
		  } } ],
		done => sub { delete $self->{closing}->{$id}; } };
}

# Drop a series made for this round while the others number in it, in a
# transaction held a while: it may drop only a series that never handed
# out a number, so every number a session got from it must still be in
# the ledger (check_round), and once the drop commits nobody gets one.
sub op_drop
{
	my ($self, $s) = @_;
	my ($name) = grep { !$self->{series}->{$_}->{dropping} } @{ $self->{droppable} // [] };
	return undef unless $name;
	my $def = $self->{series}->{$name};
	my $commit = $s->{rng}->() < 0.7;
	$def->{dropping} = 1;
	return { name => "drop_series $name", script => [
		{ sql => 'BEGIN' },
		{ sql => "SELECT invoice_seq.drop_series('$name')",
		  error => sub {
			  my ($st, $e) = @_;
			  return 'abort' if $st eq '40P01' || ($st eq '55000' && $e =~ /has handed out numbers/);
			  return undef;
		  } },
		{ sleep => $s->{rng}->() * MAX_SLEEP },
		{ sql => $commit ? 'COMMIT' : 'ROLLBACK',
		  ok => sub {
			  if ($commit)
			  {
				  $def->{dropped} = 1;
				  $self->{completed}->{'drop committed'}++;
			  }
			  'next';
		  } } ],
		done => sub {
			if ($def->{dropped})
			{
				$self->{droppable} = [ grep { $_ ne $name } @{ $self->{droppable} } ];
			}
			else
			{
				$def->{dropping} = 0;
			}
		} };
}

# check_series() and verify_series() while the others run: a gap is a
# problem (none is ever made while sessions run), and so is a number held
# longer than stale_after that is not reported.
sub op_audit
{
	my ($self, $s) = @_;
	my @audited = ((grep { !/^[DX]/ } sort keys %{ $self->{series} }), 'B', 'B');
	my $series = $self->{midnight} // $audited[ int($s->{rng}->() * @audited) ];
	my $started;
	my @held_before;
	return { name => "check_series $series", script => [
		{ sql => 'SELECT 1', ok => sub {
			$started = time;
			@held_before = grep { $_->{held} && $_->{held}->{series} eq $series
				  && $started - $_->{held}->{since} > STALE_AFTER + 0.5 } $self->sessions;
			@held_before = map { { %{ $_->{held} }, session => $_ } } @held_before;
			'next';
		} },
		{ sql => "SELECT invoice_no, problem, period FROM invoice_seq.check_series('$series')",
		  ok => sub {
			  my ($rows) = @_;
			  my %stale = map { ($_->[0] => 1) } grep { $_->[1] eq 'stale_reservation' } @$rows;
			  for my $r (grep { $_->[1] eq 'gap' } @$rows)
			  {
				  next if grep { $_->[0] eq $series && $_->[1] eq $r->[2] && $_->[2] == $r->[0] } @{ $self->{restored} };
				  $self->fail_check("check_series($series) reported a gap at $r->[0] while sessions ran");
			  }
			  for my $h (@held_before)
			  {
				  next unless $h->{session}->{held} && $h->{session}->{held}->{no} == $h->{no};
				  $self->fail_check("check_series($series): number $h->{no} held for "
					  . sprintf('%.1f', time - $h->{since}) . " s is not reported stale")
					unless $stale{ $h->{no} };
			  }
			  'next';
		  } },
		{ sql => "SELECT problem, invoice_no FROM invoice_seq.verify_series('$series', '"
			. $self->period_now($series) . "')",
		  ok => sub {
			  my ($rows) = @_;
			  $self->fail_check("verify_series($series) found $_->[0] at $_->[1] while sessions ran") for @$rows;
			  'next';
		  } } ] };
}

# A one-step number of M in an earlier month, at the last second of that
# month (so that it is never dated before a number of that month), with a
# hole below a reservation that the sequencer commits, now and then: the
# allocator reads many periods, evicts, and sweeps old months.
sub op_backdated
{
	my ($self, $s) = @_;
	my @t = gmtime($self->{clock});
	my ($y, $m) = ($t[5] + 1900, $t[4] + 1 - 1 - int($s->{rng}->() * 24));
	while ($m < 1) { $m += 12; $y--; }
	my $period = sprintf('%04d-%02d', $y, $m);
	my $end = Time::Local::timegm(0, 0, 0, 1, $m == 12 ? 0 : $m, $m == 12 ? $y + 1 : $y) - 1;
	my $clock = strftime('%Y-%m-%d %H:%M:%S+00', gmtime($end));
	my $error = sub { my ($st, $e) = @_; return $self->numbering_error('M', $st, $e, $period); };
	my $insert = "INSERT INTO app_invoice SELECT series, period, invoice_no, 'one-step'"
	  . " FROM invoice_seq.next_invoice('M') RETURNING no, period";
	my @taken;
	my $hole = $s->{rng}->() < 0.5;
	return { name => "one-step of M in $period", script => [
		{ sql => 'BEGIN' },
		{ sql => "SET LOCAL invoice_seq.test_clock = '$clock'" },
		{ sql => $insert, error => $error,
		  ok => sub { push @taken, [ 'M', $_[0]->[0]->[1], $_[0]->[0]->[0] ]; 'next' } },
		$hole ? { sql => "SELECT invoice_seq.reserve_invoice_no('M')", error => $error }
		  : { sql => 'SELECT 1' },
		$hole || $s->{rng}->() < 0.3 ? { sql => 'ROLLBACK' }
		  : { sql => 'COMMIT', ok => sub { push @{ $self->{committed} }, @taken; 'next' } } ] };
}

# A one-step number held across the round's clock move (see run_round),
# then committed or rolled back.
sub op_straddle
{
	my ($self, $s, $series) = @_;
	my $op = $self->op_one_step($s, $series, 'straddle');
	$op->{straddle} = 1;
	return $op;
}

# One operation for an idle session.
sub next_op
{
	my ($self, $s) = @_;
	if ($s->{tenant})
	{
		return $self->op_tenant($s);
	}
	my @series = $self->{midnight} ? ($self->{midnight})
	  : (qw(N M Y T), @{ $self->{droppable} // [] });
	my $series = $series[ int($s->{rng}->() * @series) ];
	# just before midnight, while the admin holds the series: numbers that
	# wait from before midnight, and numbers asked for just after it
	if ($self->{midnight} && time > $self->{midnight_at} - 1.6 && time < $self->{midnight_at})
	{
		my $op = $self->op_one_step($s, $series, 'late');
		$op->{script}->[1] = { sleep => $s->{rng}->() < 0.5 ? 0 : $self->{midnight_at} + 0.2 - time };
		return $op;
	}
	# an asynchronous round numbers in one step only, slowly: nothing but
	# the WAL writer (every wal_writer_delay) flushes the WAL
	if ($self->{async})
	{
		my $op = $self->op_one_step($s, $series, 'auto');
		unshift @{ $op->{script} }, { sleep => $s->{rng}->() * MAX_SLEEP };
		return $op;
	}
	my $kind = _pick($s->{rng}, one_step => 6, reserve => 6, known => 5, mixed => 1,
		alter => 1, owner => 1, close => 0.5, drop => 0.5, audit => 1.5, big => 3, backdated => 1,
		straddle => $self->{jump_at} ? 3 : 0);
	$kind = 'one_step' if $self->{midnight} && $kind =~ /owner|close|drop|big|backdated/;
	return $self->op_one_step($s, 'B', 'commit') if $kind eq 'big';
	return $self->op_backdated($s) if $kind eq 'backdated';
	return $self->op_straddle($s, $series) if $kind eq 'straddle';
	return $self->op_one_step($s, $series) if $kind eq 'one_step';
	return $self->op_reserve($s, $series) if $kind eq 'reserve';
	return $self->op_known_key($s, $series) if $kind eq 'known';
	return $self->op_mixed_block($s, $series) if $kind eq 'mixed';
	return $self->op_alter($s, $series) if $kind eq 'alter';
	return $self->op_owner_change($s) // $self->op_one_step($s, $series) if $kind eq 'owner';
	return $self->op_close($s) // $self->op_one_step($s, $series) if $kind eq 'close';
	return $self->op_drop($s) // $self->op_one_step($s, $series) if $kind eq 'drop';
	return $self->op_audit($s);
}

# --- rounds -------------------------------------------------------------

sub admin_dbh
{
	my ($self) = @_;
	my $node = $self->{node};
	if (!$self->{admin} || !$self->{admin}->ping)
	{
		my $dsn = sprintf('dbi:Pg:host=%s;port=%s;dbname=postgres', $node->host, $node->port);
		for (1 .. 150)
		{
			$self->{admin} = DBI->connect($dsn, '', '', { AutoCommit => 1, RaiseError => 0, PrintError => 0 });
			last if $self->{admin};
			sleep(0.2);
		}
		die "cannot connect: $DBI::errstr" unless $self->{admin};
	}
	return $self->{admin};
}

# Move the test clock on, or plan a midnight round on the real clock.
sub move_clock
{
	my ($self, $rng) = @_;
	my $how = _pick($rng, minutes => 3, day => 3, month => 2, year => 0.5, midnight => 1);
	$self->{midnight} = undef;
	if ($how eq 'midnight')
	{
		# a series whose midnight is the first minute at least 4 s away
		my $midnight = 60 * (int((time + 4) / 60) + 1);
		my $name = 'D' . $self->{round};
		my $zone = 'XXX+' . strftime('%H:%M', gmtime($midnight));
		$self->admin_dbh->do("SELECT invoice_seq.create_series('$name', time_zone => '$zone', stale_after => '2 seconds')")
		  or die $self->admin_dbh->errstr;
		$self->{series}->{$name} = { reset => 'never', chronological => 1, zone => $zone };
		$self->{midnight} = $name;
		$self->{midnight_at} = $midnight;
		return "real clock, midnight of $name at " . strftime('%H:%M:%S', gmtime($midnight)) . ' UTC';
	}
	my %step = (minutes => 60 * (1 + int($rng->() * 120)), day => 86400 + int($rng->() * 7200),
		month => 86400 * (28 + int($rng->() * 5)), year => 86400 * 366);
	$self->{clock} += $step{$how};
	return 'test clock ' . strftime('%Y-%m-%d %H:%M', gmtime($self->{clock}));
}

sub set_clock
{
	my ($self, $s) = @_;
	{
		local $SIG{__WARN__} = sub { };
		$s->{dbh}->do('ROLLBACK');
	}
	my @sql = ('SET synchronous_commit = ' . ($self->{async} ? 'off' : 'on'));
	push @sql, $self->{midnight} ? 'RESET invoice_seq.test_clock'
	  : "SET invoice_seq.test_clock = '" . strftime('%Y-%m-%d %H:%M:%S+00', gmtime($self->{clock})) . "'"
	  if $s->{role} ne 'rnd_app_a';
	for my $sql (@sql)
	{
		next if $s->{dbh}->do($sql);
		# the connection died after it was last seen alive (a crash)
		$self->connect_session($s);
		$s->{dbh}->do($sql) or die $s->{dbh}->errstr;
	}
	$s->{clock_of} = $self->{clock_version};
	return;
}

# One fault, or none.
sub strike
{
	my ($self, $rng) = @_;
	my $fault = $self->{async} || $self->{jumped} ? _pick($rng, kill_backend => 1, restart => 1)
	  : _pick($rng, none => 5, terminate => 2, kill_backend => 1, kill_sequencer => 1, restart => 1);
	my $node = $self->{node};
	my $dbh = $self->admin_dbh;
	return 'none' if $fault eq 'none';
	$self->{faulted} = 1;
	if ($fault eq 'terminate')
	{
		$dbh->do(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		           WHERE application_name LIKE 'rnd_%' AND state <> 'idle'
		           ORDER BY pid LIMIT 2});
	}
	elsif ($fault eq 'kill_backend' || $fault eq 'kill_sequencer')
	{
		my $type = $fault eq 'kill_backend' ? q{application_name LIKE 'rnd_%'}
		  : q{backend_type = 'invoice_seq sequencer'};
		my ($pid) = $dbh->selectrow_array("SELECT pid FROM pg_stat_activity WHERE $type ORDER BY pid LIMIT 1");
		kill 'KILL', $pid if $pid;
		$self->{admin} = undef;
	}
	else
	{
		$node->stop('immediate');
		$node->start;
		$self->{admin} = undef;
	}
	return $fault;
}

# Start the next operation of an idle session.
sub start_op
{
	my ($self, $s, $op) = @_;
	$self->set_clock($s) if ($s->{clock_of} // -1) != $self->{clock_version};
	$s->{op} = $op // $self->next_op($s);
	$s->{script} = $s->{op}->{script};
	$s->{step} = 0;
	$self->start_step($s);
	return;
}

# The kind of a round, and its clock; see move_clock.
sub plan_round
{
	my ($self, $rng, $seconds) = @_;
	my $clock = $self->move_clock($rng);
	$self->{clock_version}++;
	$self->{async} = !$self->{midnight} && $rng->() < 0.15;
	$self->{jump_at} = !$self->{midnight} && !$self->{async} && $rng->() < 0.5
	  ? time + $seconds * (0.3 + 0.3 * $rng->()) : undef;
	# a new series, which the sessions number in and may drop (op_drop)
	if (!$self->{midnight} && @{ $self->{droppable} // [] } < 2)
	{
		my $name = 'X' . $self->{round};
		$self->admin_dbh->do("SELECT invoice_seq.create_series('$name', stale_after => '"
			  . STALE_AFTER . " seconds')") or die $self->admin_dbh->errstr;
		$self->{series}->{$name} = { reset => 'never', chronological => 1 };
		push @{ $self->{droppable} }, $name;
	}
	$clock .= ', asynchronous commits' if $self->{async};
	$clock .= ', a clock move in the middle' if $self->{jump_at};
	return $clock;
}

# In the middle of a round: once every session is idle, or holds a number
# across the move (op_straddle), move the test clock on by a day.
sub jump_clock
{
	my ($self, @sessions) = @_;
	return 0 if grep { $_->{busy} && !($_->{op} && $_->{op}->{straddle} && $_->{busy} eq 'sleep') } @sessions;
	$self->{clock} += 86400 + 3600;
	$self->{clock_version}++;
	$self->{jump_at} = undef;
	$self->{jumped} = 1;
	return 1;
}

sub run_round
{
	my ($self, $seconds) = @_;
	$self->{round}++;
	$self->{round_failures} = $self->{failures};
	my $rng = _rng($self->{seed} * 7919 + $self->{round});
	my $clock = $self->plan_round($rng, $seconds);
	$self->{faulted} = 0;
	$self->{jumped} = 0;
	my @sessions = $self->sessions;
	for my $s (@sessions)
	{
		$self->connect_session($s) unless $s->{dbh} && $s->{dbh}->ping;
		$self->set_clock($s);
	}
	my $end = $self->{midnight} ? $self->{midnight_at} + 4 : time + $seconds;
	my $fault_rng = _rng($self->{seed} * 104729 + $self->{round});
	# after the clock move, if there is one, once the numbers held across it
	# are given back: a restart then reads their holes
	my $fault_at = $self->{jump_at} ? $self->{jump_at} + 2 + 2 * $rng->()
	  : time + $rng->() * ($end - time);
	$end = max($end, $fault_at + 2) if $self->{jump_at};
	my $fault = 'none';
	my $admin_at = $self->{midnight} ? $self->{midnight_at} - 2 : undef;
	local $SIG{__WARN__} = sub {
		my ($msg) = @_;
		if ($self->{current}) { push @{ $self->{current}->{notices} }, $msg; }
	};
	while (time < $end || grep { $_->{busy} } @sessions)
	{
		my $jumping = $self->{jump_at} && time >= $self->{jump_at};
		$jumping = 0 if $jumping && $self->jump_clock(@sessions);
		for my $s (@sessions)
		{
			next if $self->poll_session($s);
			next unless time < $end && !$jumping && $s->{dbh};
			my $op;
			if ($admin_at && time >= $admin_at && !$s->{tenant})
			{
				# an administrator holds the midnight series across its midnight
				$admin_at = undef;
				$op = { name => "alter_series $self->{midnight} across midnight", script => [
					{ sql => 'BEGIN' },
					{ sql => "SELECT invoice_seq.alter_series('$self->{midnight}', stale_after => '"
						  . STALE_AFTER . " seconds')" },
					{ sleep => 3.5 }, { sql => 'COMMIT' } ] };
			}
			$self->start_op($s, $op);
		}
		if ($fault eq 'none' && time >= $fault_at && !$self->{midnight})
		{
			$fault = $self->strike($fault_rng);
			$fault_at = $end + 1;
		}
		sleep(0.005);
	}
	$self->{jump_at} = undef;
	return ($clock, $fault);
}

# --- the model, checked ----------------------------------------------------

sub check_round
{
	my ($self, $clock, $fault) = @_;
	my $dbh = $self->admin_dbh;
	my $when = "round $self->{round} ($clock; fault: $fault)";
	my $before = $self->{round_failures};
	$self->judge_tenant;
	InvoiceSeqTest::wait_for_sequencer($self->{node}) if $fault ne 'none';

	# every key a client saw is that key's number in the ledger
	my %ledger_keys = map { ("$_->[0]\t$_->[1]" => $_) } @{ $dbh->selectall_arrayref(
		q{SELECT series, idempotency_key, invoice_no, period, status FROM invoice_seq.ledger
		  WHERE idempotency_key IS NOT NULL}) };
	for my $id (sort keys %{ $self->{keys} })
	{
		my $entry = $self->{keys}->{$id};
		my $row = $ledger_keys{$id};
		if (!$row)
		{
			$self->fail_check("key $id: number $entry->{number} was seen, but the key is not in the ledger");
			delete $self->{keys}->{$id};	# reported once
			next;
		}
		if ($row->[2] != $entry->{number})
		{
			$self->fail_check("key $id: number $entry->{number} was seen, the ledger has $row->[2]");
			$entry->{number} = $row->[2];
		}
		$entry->{period} = $row->[3];
		$entry->{state} = $row->[4] eq 'issued' ? 'issued' : $row->[4];
	}

	# every one-step number whose commit returned is issued
	my %issued = map { (join("\t", @$_) => 1) } @{ $dbh->selectall_arrayref(
		q{SELECT series, period, invoice_no FROM invoice_seq.ledger WHERE status = 'issued'}) };
	my @lost = grep { !$issued{ join("\t", @$_) } } @{ $self->{committed} // [] };
	$self->fail_check('one-step numbers whose commit returned are not issued: '
		  . join(', ', map { "$_->[0] $_->[1] $_->[2]" } @lost[ 0 .. min(4, $#lost) ]))
	  if @lost;
	$self->{committed} = [];

	# dense, no duplicate display number, issued = the application's rows
	for my $r (@{ $dbh->selectall_arrayref(q{
		SELECT l.series, l.period, count(*), max(l.invoice_no), min(l.invoice_no), s.start_at
		FROM invoice_seq.ledger l JOIN invoice_seq.series_def s ON s.name = l.series
		GROUP BY 1, 2, 6 HAVING count(*) <> max(l.invoice_no) - min(l.invoice_no) + 1
		    OR min(l.invoice_no) <> s.start_at}) })
	{
		next if grep { $_->[0] eq $r->[0] && $_->[1] eq $r->[1] } @{ $self->{restored} };
		$self->fail_check("$r->[0] $r->[1]: not dense ($r->[2] entries from $r->[4] to $r->[3])");
	}
	my $dup = $dbh->selectall_arrayref(q{
		SELECT s.name, e.display_no, string_agg(e.period || ' ' || e.invoice_no || ' ' || e.status, ', ')
		FROM invoice_seq.ledger_entry e JOIN invoice_seq.series_def s ON s.id = e.series_id
		GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 3});
	$self->fail_check("display numbers appear twice: " . join('; ', map { "@$_" } @$dup)) if @$dup;
	my $mismatch = $dbh->selectall_arrayref(q{
		SELECT coalesce(a.series, l.series), coalesce(a.period, l.period), coalesce(a.no, l.invoice_no),
		       a.no IS NULL AS not_in_app
		FROM app_invoice a
		FULL JOIN (SELECT series, period, invoice_no FROM invoice_seq.ledger WHERE status = 'issued') l
		  ON (l.series, l.period, l.invoice_no) = (a.series, a.period, a.no)
		WHERE a.no IS NULL OR l.invoice_no IS NULL LIMIT 5});
	$self->fail_check("issued numbers and the application's rows differ: "
		  . join(', ', map { "$_->[0] $_->[1] $_->[2]" . ($_->[3] ? ' (issued, no row)' : ' (row, not issued)') } @$mismatch))
	  if @$mismatch;

	# chronology, in each chronological series, by the series' own time zone
	my $chrono = $dbh->selectall_arrayref(q{
		SELECT series, period, invoice_no FROM (
		    SELECT l.series, l.period, l.invoice_no,
		           (l.confirmed_at AT TIME ZONE d.time_zone)::date AS day,
		           max((l.confirmed_at AT TIME ZONE d.time_zone)::date)
		               OVER (PARTITION BY l.series, l.period ORDER BY l.invoice_no
		                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS latest
		    FROM invoice_seq.ledger l JOIN invoice_seq.series_def d ON d.name = l.series
		    WHERE d.chronological AND l.status = 'issued') c
		WHERE day < latest LIMIT 5});
	$self->fail_check('chronology broken: ' . join(', ', map { "$_->[0] $_->[1] $_->[2]" } @$chrono)) if @$chrono;

	# closed periods, exactly those whose closing committed
	my %closed = map { ("$_->[0]\t$_->[1]" => $_->[2] // 0) } @{ $dbh->selectall_arrayref(
		'SELECT series, period, last_no FROM invoice_seq.closed_periods') };
	for my $id (sort(keys %closed), sort(keys %{ $self->{closed} }))
	{
		my ($got, $want) = ($closed{$id}, $self->{closed}->{$id});
		$self->fail_check("period $id: closed (last $got), but no closing committed") if defined $got && !defined $want && !$self->{faulted};
		$self->fail_check("period $id: its closing committed, but it is not closed") if !defined $got && defined $want;
		if (defined $got)
		{
			$self->{closed}->{$id} = $got;
			my ($series, $period) = split /\t/, $id;
			my ($max) = $dbh->selectrow_array('SELECT max(invoice_no) FROM invoice_seq.ledger WHERE series = ? AND period = ?',
				undef, $series, $period);
			$self->fail_check("period $id: closed with last number $got, but $max is in it") if ($max // 0) > ($got // 0);
		}
	}

	# a dropped series left nothing behind
	my ($orphans) = $dbh->selectrow_array(q{SELECT count(*) FROM invoice_seq.ledger_entry e
		WHERE NOT EXISTS (SELECT FROM invoice_seq.series_def d WHERE d.id = e.series_id)});
	$self->fail_check("$orphans ledger entries belong to no series") if $orphans;

	# check_series: a gap only where one was made by hand
	$self->restore_by_hand($dbh) if $self->{round} % 5 == 0;
	my %made = map { (join("\t", @$_) => 1) } @{ $self->{restored} };
	my %reported;
	for my $r (@{ $dbh->selectall_arrayref(q{SELECT series, period, invoice_no, problem FROM invoice_seq.check_series()}) })
	{
		my $id = "$r->[0]\t$r->[1]\t$r->[2]";
		if ($r->[3] eq 'gap')
		{
			$reported{$id} = 1;
			$self->fail_check("check_series: false gap $r->[0] $r->[1] $r->[2]") unless $made{$id};
		}
		elsif ($r->[3] eq 'chronology')
		{
			$self->fail_check("check_series: chronology $r->[0] $r->[1] $r->[2]");
		}
	}
	# a hole made by hand is a gap, unless the allocator has not read its
	# period yet: then it is free, and the ledger view shows it recyclable
	my %recyclable = map { (join("\t", @$_) => 1) } @{ $dbh->selectall_arrayref(
		q{SELECT series, period, invoice_no FROM invoice_seq.ledger WHERE status = 'recyclable'}) };
	$self->fail_check("check_series: the gap $_ made by hand is neither reported nor recyclable")
	  for grep { !$reported{$_} && !$recyclable{$_} } sort keys %made;
	$self->fail_check("check_series: $_ is reported as a gap and shown recyclable")
	  for grep { $reported{$_} && $recyclable{$_} } sort keys %reported;
	$self->fill_restored($dbh);
	for my $r (@{ $dbh->selectall_arrayref(q{SELECT DISTINCT series, period FROM invoice_seq.ledger}) })
	{
		my ($n) = $dbh->selectrow_array('SELECT count(*) FROM invoice_seq.verify_series(?, ?)', undef, @$r);
		$self->fail_check("verify_series($r->[0], '$r->[1]'): $n problems") if $n;
	}
	ok($self->{failures} == $before, "$when: the ledger keeps every promise");
	return;
}

# A row put in the ledger by hand (a restore) above the top of series N
# leaves a hole below it that the allocator never handed out: a real gap,
# which check_series must report.
sub restore_by_hand
{
	my ($self, $dbh) = @_;
	my ($top) = $dbh->selectrow_array(q{SELECT max(invoice_no) FROM invoice_seq.ledger_entry e
		JOIN invoice_seq.series_def s ON s.id = e.series_id WHERE s.name = 'N'});
	my $no = ($top // 0) + 2;
	$dbh->do(qq{INSERT INTO invoice_seq.ledger_entry
		(series_id, period, invoice_no, display_no, status, reserved_at, reserved_by, voided_at, voided_by, void_reason)
		SELECT id, '', $no, '$no', 'voided', now(), 'restore', now(), 'restore', 'restored by hand'
		FROM invoice_seq.series_def WHERE name = 'N'}) or die $dbh->errstr;
	push @{ $self->{restored} }, [ 'N', '', $no - 1 ];
	return;
}

# Number through the hole made by hand, as an application would: the
# number meeting the restored row fails once (23505), then numbering goes on.
sub fill_restored
{
	my ($self, $dbh) = @_;
	return unless @{ $self->{restored} };
	$dbh->do(q{SET invoice_seq.test_clock = '} . strftime('%Y-%m-%d %H:%M:%S+00', gmtime($self->{clock})) . q{'});
	for (1 .. 3)
	{
		$dbh->do(q{INSERT INTO app_invoice SELECT series, period, invoice_no, 'one-step'
		           FROM invoice_seq.next_invoice('N')})
		  or $dbh->state eq '23505' or $self->fail_check('numbering after a restore: ' . $dbh->errstr);
	}
	$dbh->do('RESET invoice_seq.test_clock');
	$self->{restored} = [];
	return;
}

sub run
{
	my ($self, %opts) = @_;
	my $deadline = time + ($opts{seconds} // 120);
	note "random checker: seed $self->{seed}, $self->{nsessions} sessions, until "
	  . strftime('%H:%M:%S', localtime($deadline));
	$self->setup;
	while (time < $deadline)
	{
		my ($clock, $fault) = $self->run_round($opts{round_seconds} // 6);
		$self->check_round($clock, $fault);
	}
	diag sprintf('random checker: seed %s, %d rounds, %d statements, %d problems', $self->{seed},
		$self->{round}, $self->{statements} // 0, $self->{failures});
	diag 'completed: ' . join(', ', map { "$_ $self->{completed}->{$_}" } sort keys %{ $self->{completed} });
	return $self->{failures};
}

1;
