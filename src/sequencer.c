/*-------------------------------------------------------------------------
 *
 * sequencer.c
 *		The sequencer: a background worker that reserves invoice numbers in
 *		short transactions of its own.
 *
 * The sequencer takes every request that is queued (up to
 * invoice_seq.max_batch_size), runs each one in its own subtransaction of a
 * single transaction, commits that transaction with synchronous_commit on,
 * and only then answers the requesters.  One WAL flush thus serves the whole
 * batch, and one bad request fails alone.
 *
 * Each database has its own sequencer, started when a request needs it and
 * gone when idle (launch.c).  It serves only reservations made inside a
 * transaction block, which must survive the caller's rollback.  It takes each number from the
 * allocator (alloc.c) like any backend, and records it in its batch.
 *
 * While it records a number, the sequencer holds the series lock (in the
 * mode that numbering transactions share) and, for a new idempotency key,
 * the key's lock, until the batch commits.  It never waits for either: a
 * client transaction may hold one (an uncommitted alter_series, or a
 * reservation of the same key being recorded) while its backend waits for
 * the sequencer, a cycle the deadlock detector could not see.  If a lock is
 * busy, the sequencer answers "locked" at once, and the requesting backend
 * waits for the lock itself, as an ordinary lock waiter, before it asks
 * again.  Any other lock the sequencer needs (on its tables) it waits for at
 * most invoice_seq.lock_timeout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "storage/lmgr.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "chain.h"
#include "launch.h"
#include "ledger.h"
#include "request.h"
#include "seal_due.h"
#include "sequencer.h"
#include "series.h"
#include "util.h"

typedef enum EntryOutcome
{
	ENTRY_PENDING,				/* not run yet */
	ENTRY_OK,
	ENTRY_FAILED,
	ENTRY_LOCKED				/* another transaction holds a lock we need */
} EntryOutcome;

/* A request taken from the queue, copied out of shared memory. */
typedef struct BatchEntry
{
	int			slotno;
	ReserveRequest request;

	EntryOutcome outcome;
	RequestBusy busy;			/* for ENTRY_LOCKED */
	ReservedNumber result;
	RequestError error;
} BatchEntry;

/* The requests of the current batch. */
static BatchEntry batch[ISEQ_MAX_BATCH];
static int	nbatch = 0;

static MemoryContext batch_context = NULL;

/* The entry of the database this sequencer serves. */
static DatabaseSequencer *my_db = NULL;

/* When the last batch ended (or the sequencer started). */
static TimestampTz last_active = 0;

/* When the next sealing pass is due. */
static TimestampTz next_seal = 0;

/* Links a sealing pass makes per chain, and how often it runs. */
#define ISEQ_SEAL_BATCH			1000
#define ISEQ_SEAL_CHAINS		64	/* chains sealed per pass, at most */
#define ISEQ_SEAL_INTERVAL_MS	1000
#define ISEQ_SEAL_LOCK_TIMEOUT	"50ms"

/*
 * A pass seals the chains listed as having new final entries (seal_due.c).
 * A sweep, pass after pass, looks at every chain of the ledger instead: at
 * start, after the list overflowed, and every ISEQ_SWEEP_INTERVAL_MS for
 * what no list holds (a restore, a prepared transaction).
 */
#define ISEQ_SWEEP_INTERVAL_MS	(10 * 60 * 1000)

static bool sweeping = true;	/* a sweep is under way */
static uint64 sweep_overflows = 0;	/* seal_due_overflows() when it began */
static TimestampTz last_sweep = 0;	/* when the last one ended */

static void sequencer_sigint(SIGNAL_ARGS);
static bool idle_for(long *timeout);
static bool seal_due(void);
static int	seal_pass(bool *more);
static int	seal_chains(bool *more);
static void sequencer_configure(void);
static void sequencer_detach(int code, Datum arg);
static int	take_requests(void);
static void run_batch(void);
static void process_entry(BatchEntry *entry);
static void answer_entries(void);
static void set_error(RequestError *error, int sqlerrcode, const char *message,
					  const char *detail, const char *hint);

/*
 * SIGINT.  lock_timeout interrupts a lock wait by sending us SIGINT, so that
 * one is handled as a backend handles it.  A cancel request from a user
 * (pg_cancel_backend) is ignored: it would end a commit's wait for a
 * synchronous standby early, without an error, and we would then answer for
 * numbers that were never replicated.  Terminating the sequencer still
 * works.
 */
static void
sequencer_sigint(SIGNAL_ARGS)
{
	if (get_timeout_indicator(LOCK_TIMEOUT, false))
		StatementCancelHandler(postgres_signal_arg);
}

void
invoice_seq_sequencer_main(Datum main_arg)
{
	Oid			dboid;

	/*
	 * SIGTERM uses die(), as database-connected workers do: the exit happens
	 * at the next CHECK_FOR_INTERRUPTS(), even inside a wait for a
	 * synchronous standby, so that a shutdown is never held up.  An exit in
	 * the middle of a batch is safe: the batch aborts, and
	 * sequencer_detach() answers its requesters.
	 */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, sequencer_sigint);
	BackgroundWorkerUnblockSignals();

	/* attach before connecting: a held database is never entered */
	my_db = launch_attach(main_arg, &dboid);
	if (my_db == NULL)
		proc_exit(0);
	before_shmem_exit(sequencer_detach, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	sequencer_configure();

	batch_context = AllocSetContextCreate(TopMemoryContext,
										  "invoice_seq batch",
										  ALLOCSET_DEFAULT_SIZES);
	last_active = GetCurrentTimestamp();

	for (;;)
	{
		long		timeout;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		/* what we read and wrote, for autovacuum and pg_stat_user_tables */
		(void) pgstat_report_stat(false);

		if (ConfigReloadPending)
		{
			bool		was_sealing = invoice_seq_sealing;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			sequencer_configure();
			/* what changed while sealing was off: the list may have overflowed */
			if (invoice_seq_sealing && !was_sealing)
				sweeping = true;
		}

		/* Requests that arrived during a batch are taken at once. */
		if (take_requests() > 0)
		{
			run_batch();
			MemoryContextReset(batch_context);
			last_active = GetCurrentTimestamp();
			continue;
		}

		/* between batches, link what can be linked */
		if (seal_due())
		{
			bool		more = false;
			int			sealed = seal_pass(&more);

			if (sealed > 0)
				last_active = GetCurrentTimestamp();
			/* a full batch, or chains left: seal again once the queue is served */
			if (sealed >= ISEQ_SEAL_BATCH || more)
			{
				next_seal = last_active;
				continue;
			}
		}

		if (launch_leave_if_done(my_db, idle_for(&timeout)))
			proc_exit(0);
		if (timeout < 0 || timeout > ISEQ_SEAL_INTERVAL_MS)
			timeout = ISEQ_SEAL_INTERVAL_MS;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
	}
}

/* Is it time for a sealing pass? */
static bool
seal_due(void)
{
	return invoice_seq_sealing &&
		TimestampDifferenceExceeds(next_seal, GetCurrentTimestamp(), 0);
}

/*
 * Seal the listed chains, or the next chains of a sweep; see
 * ISEQ_SWEEP_INTERVAL_MS.  The list is read after the sweep's beginning is
 * decided, so that a chain listed before a sweep is sealed either by the
 * sweep or from the list.
 */
static int
seal_chains(bool *more)
{
	int			sealed;

	if (!sweeping &&
		(seal_due_overflows() != sweep_overflows ||
		 TimestampDifferenceExceeds(last_sweep, GetCurrentTimestamp(),
									ISEQ_SWEEP_INTERVAL_MS)))
	{
		sweeping = true;
		sweep_overflows = seal_due_overflows();
	}
	if (!sweeping)
		return chain_seal_listed(ISEQ_SEAL_BATCH, ISEQ_SEAL_CHAINS, more);

	sealed = chain_seal_database(ISEQ_SEAL_BATCH, ISEQ_SEAL_CHAINS, more);
	if (!*more)
	{
		sweeping = false;
		last_sweep = GetCurrentTimestamp();
	}
	/* the listed chains come after the sweep */
	*more = true;
	return sealed;
}

/*
 * Seal the database's chains (chain.c), at most ISEQ_SEAL_BATCH links per
 * chain and ISEQ_SEAL_CHAINS chains, in a transaction of its own.  Returns
 * how many links were made; *more says whether chains were left for the
 * next pass.
 *
 * Sealing is background work: it gives way to anyone else's lock.  Its
 * lock waits are bounded by ISEQ_SEAL_LOCK_TIMEOUT, far below
 * deadlock_timeout, so a DDL that waits for it (DROP EXTENSION, say) never
 * meets it in a deadlock; the pass is then skipped, quietly, until the next
 * interval.  After any other error (the extension older than the library,
 * say) the next pass waits a minute, so that the log is not flooded.
 */
static int
seal_pass(bool *more)
{
	volatile int sealed = 0;
	MemoryContext oldcontext = CurrentMemoryContext;

	next_seal = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ISEQ_SEAL_INTERVAL_MS);
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		(void) set_config_option("lock_timeout", ISEQ_SEAL_LOCK_TIMEOUT,
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (OidIsValid(get_extension_oid("invoice_seq", true)))
		{
			pgstat_report_activity(STATE_RUNNING, "sealing the ledger's chains");
			invoice_seq_check_schema_version();
			sealed = seal_chains(more);
		}
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		{
			EmitErrorReport();
			next_seal = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60000);
		}
		FreeErrorData(edata);
		AbortOutOfAnyTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		sealed = 0;
		*more = false;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(batch_context);
	return sealed;
}

/*
 * Has the sequencer been idle for invoice_seq.idle_timeout?  If not, set
 * *timeout to how long it may still wait (-1: forever).
 */
static bool
idle_for(long *timeout)
{
	TimestampTz deadline;
	long		secs;
	int			usecs;

	*timeout = -1;
	if (invoice_seq_idle_timeout <= 0)
		return false;
	deadline = TimestampTzPlusMilliseconds(last_active, invoice_seq_idle_timeout);
	if (GetCurrentTimestamp() >= deadline)
		return true;
	TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
	*timeout = secs * 1000 + usecs / 1000 + 1;
	return false;
}

/*
 * Session settings the sequencer relies on, whatever postgresql.conf says:
 * durable commits, a fresh snapshot per statement, and no wait on a table
 * lock that lasts longer than invoice_seq.lock_timeout (a client's LOCK
 * TABLE or VACUUM FULL on the ledger, say).
 */
static void
sequencer_configure(void)
{
	char		lock_timeout[32];

	snprintf(lock_timeout, sizeof(lock_timeout), "%d", invoice_seq_lock_timeout);

	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off",
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", lock_timeout, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Exit callback: no request may be left waiting for a sequencer that is
 * gone.  Requests whose batch had started to commit may have been reserved;
 * the others certainly were not.
 */
static void
sequencer_detach(int code, Datum arg)
{
	int			i;

	for (i = 0; i < nbatch; i++)
	{
		BatchEntry *entry = &batch[i];

		if (entry->outcome == ENTRY_OK &&
			sequencer_shared->slots[entry->slotno].committing)
			set_error(&entry->error, ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN,
					  "invoice_seq sequencer exited while committing a reservation",
					  psprintf("A number of series \"%s\" may have been reserved.",
							   entry->request.series),
					  "Retry with the same idempotency key, or look for the reservation in invoice_seq.ledger.");
		else
			set_error(&entry->error, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
					  "invoice_seq sequencer exited before reserving a number",
					  psprintf("No number of series \"%s\" was reserved.",
							   entry->request.series),
					  "Retry; the sequencer is restarted automatically.");
		entry->outcome = ENTRY_FAILED;
	}
	answer_entries();

	launch_detach(my_db, code);
}

/* Count a request's queue wait, in its power-of-two bucket. */
static void
record_wait(SequencerStats *stats, TimestampTz submitted_at, TimestampTz now)
{
	long		secs;
	int			usecs;
	uint64		wait;
	int			bucket = 0;

	TimestampDifference(submitted_at, now, &secs, &usecs);
	wait = (uint64) secs * 1000000 + usecs;
	while (bucket < ISEQ_WAIT_BUCKETS - 1 && (UINT64CONST(1) << bucket) <= wait)
		bucket++;
	stats->wait_sum_us += wait;
	stats->wait_buckets[bucket]++;
}

/* Move queued requests into a new batch.  Returns how many were taken. */
static int
take_requests(void)
{
	TimestampTz now = GetCurrentTimestamp();
	SequencerStats *stats = &my_db->stats;

	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	nbatch = 0;
	while (nbatch < invoice_seq_max_batch_size)
	{
		int			slotno = request_queue_pop(my_db);
		SequencerRequest *slot;
		BatchEntry *entry;

		if (slotno < 0)
			break;
		slot = &sequencer_shared->slots[slotno];
		Assert(slot->state == REQUEST_QUEUED);
		slot->state = REQUEST_WORKING;

		entry = &batch[nbatch++];
		entry->slotno = slotno;
		entry->request = slot->request;
		entry->outcome = ENTRY_PENDING;
		record_wait(stats, slot->submitted_at, now);
	}
	if (nbatch > 0)
	{
		stats->requests += nbatch;
		stats->batches++;
		stats->max_batch = Max(stats->max_batch, (uint64) nbatch);
	}
	LWLockRelease(sequencer_shared->lock);

	return nbatch;
}

/*
 * Run every request of the batch in one transaction, commit it, and answer.
 */
static void
run_batch(void)
{
	int			i;

	MemoryContextSwitchTo(batch_context);

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();

		/*
		 * SPI needs an outer snapshot; each statement then takes a fresh one
		 * of its own, so that a statement run after a lock was granted sees
		 * what the lock's previous holder committed.
		 */
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "reserving invoice numbers");

		for (i = 0; i < nbatch; i++)
			process_entry(&batch[i]);

		/* From here on, a reservation may be durable even if we die. */
		LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < nbatch; i++)
			if (batch[i].outcome == ENTRY_OK)
				sequencer_shared->slots[batch[i].slotno].committing = true;
		LWLockRelease(sequencer_shared->lock);

		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/*
		 * The batch failed as a whole, outside any one request (at commit,
		 * say).  Nothing of it was committed: fail its requests, log the
		 * error, and go on with the next batch.
		 */
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(batch_context);
		edata = CopyErrorData();
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();

		for (i = 0; i < nbatch; i++)
		{
			if (batch[i].outcome == ENTRY_LOCKED)
				continue;
			set_error(&batch[i].error, edata->sqlerrcode, edata->message,
					  psprintf("No number of series \"%s\" was reserved.",
							   batch[i].request.series),
					  "Retry the reservation.");
			batch[i].outcome = ENTRY_FAILED;
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();

	/*
	 * A termination request ends the commit's wait for a synchronous standby
	 * without an error, and the commit then completes locally.  Act on it
	 * before anyone is told that a number is reserved: we exit here, and
	 * sequencer_detach() reports the outcome as unknown.
	 */
	CHECK_FOR_INTERRUPTS();

	pgstat_report_activity(STATE_IDLE, NULL);
	answer_entries();
}

/*
 * Take the locks a request needs, if they are free: the series lock, and
 * for an idempotency key, the key's lock.  Returns the one that was busy.
 */
static RequestLock
try_locks(const BatchEntry *entry)
{
	LOCKTAG		tag;

	if (!series_try_lock_for_numbering(entry->request.series_id))
		return REQUEST_LOCK_SERIES;
	if (!entry->request.has_key)
		return REQUEST_LOCK_NONE;
	key_lock_tag(&tag, entry->request.series_id, entry->request.key);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return REQUEST_LOCK_KEY;
	return REQUEST_LOCK_NONE;
}

/*
 * Reserve the number a request asks for, with its locks held: the number of
 * its key if the key is known, else a new one.  Sets entry->busy instead if
 * the key's row is being inserted by a transaction still running.
 */
static void
reserve_entry(BatchEntry *entry)
{
	InvoiceSeries series;
	const char *key = entry->request.has_key ? entry->request.key : NULL;

	if (!series_lookup_by_id(entry->request.series_id, &series))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invoice series \"%s\" does not exist", entry->request.series),
				 errdetail("It was dropped while the reservation waited.")));
	/* the series may have been given to another role since the caller checked */
	series_check_member(&series, entry->request.roleid);
	if (key != NULL &&
		ledger_find_key(&series, key, &entry->result, &entry->busy.xid))
		return;
	if (TransactionIdIsValid(entry->busy.xid))
	{
		entry->busy.lock = REQUEST_LOCK_XACT;
		return;
	}
	ledger_take_number(&series, key, ENTRY_RESERVED, entry->request.role,
					   entry->request.clock, NULL, &entry->result);
}

/*
 * Reserve one number, in a subtransaction of the batch.
 */
static void
process_entry(BatchEntry *entry)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);

	PG_TRY();
	{
		ledger_lock_tables();
		entry->busy.lock = try_locks(entry);
		entry->busy.xid = InvalidTransactionId;
		if (entry->busy.lock == REQUEST_LOCK_NONE)
			reserve_entry(entry);
		entry->outcome = entry->busy.lock == REQUEST_LOCK_NONE ?
			ENTRY_OK : ENTRY_LOCKED;

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		set_error(&entry->error, edata->sqlerrcode, edata->message,
				  edata->detail,
				  edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ?
				  "Another transaction holds a lock on the ledger (LOCK TABLE, ALTER TABLE or VACUUM FULL, say) longer than invoice_seq.lock_timeout." :
				  edata->hint);
		entry->outcome = ENTRY_FAILED;
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * Hand the answers of the batch to their requesters.
 */
static void
answer_entries(void)
{
	int			i;

	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < nbatch; i++)
	{
		BatchEntry *entry = &batch[i];
		SequencerRequest *slot = &sequencer_shared->slots[entry->slotno];

		Assert(entry->outcome != ENTRY_PENDING);
		if (slot->abandoned)
		{
			/* nobody waits for the answer; free the slot for reuse */
			slot->abandoned = false;
			slot->state = REQUEST_FREE;
		}
		else
		{
			slot->ok = (entry->outcome == ENTRY_OK);
			slot->busy.lock = REQUEST_LOCK_NONE;
			if (entry->outcome == ENTRY_LOCKED)
				slot->busy = entry->busy;
			if (slot->ok)
				memcpy(&slot->result, &entry->result, sizeof(ReservedNumber));
			else
				memcpy(&slot->error, &entry->error, sizeof(RequestError));
			slot->state = REQUEST_DONE;
		}
		slot->committing = false;
	}
	LWLockRelease(sequencer_shared->lock);

	for (i = 0; i < nbatch; i++)
		SetLatch(&GetPGProcByNumber(batch[i].slotno)->procLatch);
	nbatch = 0;
}

static void
set_error(RequestError *error, int sqlerrcode, const char *message,
		  const char *detail, const char *hint)
{
	error->sqlerrcode = sqlerrcode;
	strlcpy(error->message, message ? message : "", sizeof(error->message));
	strlcpy(error->detail, detail ? detail : "", sizeof(error->detail));
	strlcpy(error->hint, hint ? hint : "", sizeof(error->hint));
}
