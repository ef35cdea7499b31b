/*-------------------------------------------------------------------------
 *
 * request.c
 *		The request path: how a backend asks the sequencer for a number and
 *		waits for the answer, and the SQL functions that do so.
 *
 * Each backend owns the request slot indexed by its pgprocno.  It fills the
 * slot, appends it to the queue, sets the sequencer's latch and sleeps on
 * its own latch until the sequencer marks the slot DONE.  If the backend
 * stops waiting (cancel, terminate, timeout) it withdraws a queued request,
 * or marks a request in progress as abandoned: the sequencer completes it
 * anyway, so a reservation that was made stays valid and a retry with the
 * same idempotency key finds it.
 *
 * If another transaction holds the series lock (an uncommitted
 * alter_series), the sequencer does not wait: it answers "series locked",
 * and the backend waits for that lock itself before asking again.
 *
 * next_invoice_no() asks the same way, naming its transaction as the
 * holder of the number, and then marks the number issued in that same
 * transaction: the number is issued if and only if the transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/wait_event.h"

#include "invoice_seq.h"

PG_FUNCTION_INFO_V1(invoice_seq_reserve_invoice_no);
PG_FUNCTION_INFO_V1(invoice_seq_reserve_invoice);
PG_FUNCTION_INFO_V1(invoice_seq_next_invoice_no);
PG_FUNCTION_INFO_V1(invoice_seq_next_invoice);

/* NULL unless the library was preloaded. */
SequencerShared *sequencer_shared = NULL;

/*
 * Whether the current transaction took one-step numbers, and whether one of
 * its subtransactions aborted since (its number may not be issued then).
 */
static bool holds_one_step = false;
static bool one_step_subabort = false;
static bool callbacks_registered = false;

/* The FIFO of queued slot numbers lives right after the slots. */
static inline int *
request_queue(SequencerShared *shared)
{
	return (int *) &shared->slots[shared->nslots];
}

Size
request_shmem_size(void)
{
	Size		size = offsetof(SequencerShared, slots);

	size = add_size(size, mul_size(MaxBackends, sizeof(SequencerRequest)));
	size = add_size(size, mul_size(MaxBackends, sizeof(int)));
	return size;
}

void
request_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sequencer_shared = ShmemInitStruct("invoice_seq", request_shmem_size(), &found);
	if (!found)
	{
		memset(sequencer_shared, 0, request_shmem_size());
		sequencer_shared->lock = &(GetNamedLWLockTranche("invoice_seq"))->lock;
		sequencer_shared->nslots = MaxBackends;
		pg_atomic_init_u64(&sequencer_shared->recycle_epoch, 1);
		sequencer_shared->stats.reset_at = GetCurrentTimestamp();
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Append a slot to the queue.  Caller holds the lock exclusively. */
void
request_queue_push(int slotno)
{
	SequencerShared *shared = sequencer_shared;

	Assert(shared->queue_len < shared->nslots);
	request_queue(shared)[(shared->queue_head + shared->queue_len) % shared->nslots] = slotno;
	shared->queue_len++;
}

/* Take the oldest slot off the queue, or -1.  Caller holds the lock. */
int
request_queue_pop(void)
{
	SequencerShared *shared = sequencer_shared;
	int			slotno;

	if (shared->queue_len == 0)
		return -1;
	slotno = request_queue(shared)[shared->queue_head];
	shared->queue_head = (shared->queue_head + 1) % shared->nslots;
	shared->queue_len--;
	return slotno;
}

/*
 * Remove a slot from the middle of the queue.  Rare (a requester gave up
 * before the sequencer took its request), so a linear shift is fine.
 * Caller holds the lock.
 */
static void
request_queue_remove(int slotno)
{
	SequencerShared *shared = sequencer_shared;
	int		   *queue = request_queue(shared);
	int			i;
	int			kept = 0;

	for (i = 0; i < shared->queue_len; i++)
	{
		int			from = (shared->queue_head + i) % shared->nslots;
		int			to = (shared->queue_head + kept) % shared->nslots;

		if (queue[from] != slotno)
			queue[to] = queue[from], kept++;
	}
	shared->queue_len = kept;
}

/*
 * Stop waiting for our request, whatever state it is in.  Runs on ERROR and
 * FATAL exits from the wait (PG_ENSURE_ERROR_CLEANUP).
 */
static void
request_withdraw(int code, Datum arg)
{
	SequencerShared *shared = sequencer_shared;
	int			slotno = DatumGetInt32(arg);
	SequencerRequest *slot = &shared->slots[slotno];

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	switch (slot->state)
	{
		case REQUEST_QUEUED:
			request_queue_remove(slotno);
			slot->state = REQUEST_FREE;
			break;
		case REQUEST_WORKING:
			/* the sequencer frees the slot when it is done with it */
			slot->abandoned = true;
			break;
		case REQUEST_DONE:
			slot->state = REQUEST_FREE;
			break;
		case REQUEST_FREE:
			break;
	}
	LWLockRelease(shared->lock);
}

/*
 * Wait until our slot is free.  It normally is; it is not only right after
 * this backend (or an earlier one with the same pgprocno) abandoned a
 * request that the sequencer is still completing.
 */
static void
wait_for_free_slot(SequencerRequest *slot)
{
	for (;;)
	{
		RequestState state;

		LWLockAcquire(sequencer_shared->lock, LW_SHARED);
		state = slot->state;
		LWLockRelease(sequencer_shared->lock);
		if (state == REQUEST_FREE)
			return;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

typedef enum RequestOutcome
{
	REQUEST_RESERVED,			/* *result is filled */
	REQUEST_FAILED,				/* *error is filled */
	REQUEST_SERIES_LOCKED		/* retry once the series lock is free */
} RequestOutcome;

/*
 * Hand a reservation request to the sequencer and wait for its answer.
 */
static RequestOutcome
request_reserve(const InvoiceSeries *series, const char *key,
				FullTransactionId holder, const char *role,
				ReservedNumber *result, RequestError *error)
{
	SequencerShared *shared = sequencer_shared;
	int			slotno = MyProc->pgprocno;
	SequencerRequest *slot;
	Latch	   *sequencer_latch;
	volatile RequestOutcome outcome = REQUEST_FAILED;

	if (slotno < 0 || slotno >= shared->nslots)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this process cannot reserve invoice numbers"),
				 errdetail("Its process number %d has no request slot.", slotno)));
	slot = &shared->slots[slotno];

	wait_for_free_slot(slot);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot->abandoned = false;
	slot->committing = false;
	slot->submitted_at = GetCurrentTimestamp();
	slot->series_id = series->id;
	strlcpy(slot->series, series->name, sizeof(slot->series));
	strlcpy(slot->role, role, sizeof(slot->role));
	slot->has_key = (key != NULL);
	strlcpy(slot->key, key ? key : "", sizeof(slot->key));
	slot->holder = holder;
	slot->clock = invoice_seq_test_now();
	slot->state = REQUEST_QUEUED;
	request_queue_push(slotno);
	sequencer_latch = shared->sequencer_latch;
	LWLockRelease(shared->lock);

	if (sequencer_latch)
		SetLatch(sequencer_latch);

	PG_ENSURE_ERROR_CLEANUP(request_withdraw, Int32GetDatum(slotno));
	{
		TimestampTz absent_since = 0;

		for (;;)
		{
			bool		running;
			bool		given_up = false;

			LWLockAcquire(shared->lock, LW_EXCLUSIVE);
			if (slot->state == REQUEST_DONE)
			{
				if (slot->ok)
				{
					outcome = REQUEST_RESERVED;
					memcpy(result, &slot->result, sizeof(ReservedNumber));
				}
				else if (slot->series_locked)
					outcome = REQUEST_SERIES_LOCKED;
				else
					memcpy(error, &slot->error, sizeof(RequestError));
				slot->state = REQUEST_FREE;
				LWLockRelease(shared->lock);
				break;
			}

			/*
			 * A request that is still queued while no sequencer runs waits at
			 * most invoice_seq.sequencer_timeout for one to start.  Once the
			 * sequencer has taken it, it always answers, even if it exits.
			 */
			running = (shared->sequencer_pid != 0);
			if (running || slot->state != REQUEST_QUEUED)
				absent_since = 0;
			else
			{
				TimestampTz now = GetCurrentTimestamp();

				if (absent_since == 0)
					absent_since = now;
				if (TimestampDifferenceExceeds(absent_since, now,
											   invoice_seq_sequencer_timeout))
				{
					request_queue_remove(slotno);
					slot->state = REQUEST_FREE;
					given_up = true;
				}
			}
			LWLockRelease(shared->lock);

			if (given_up)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("invoice_seq sequencer is not running"),
						 errdetail("No number of series \"%s\" was reserved.", series->name),
						 errhint("The sequencer is restarted automatically; if it keeps failing, check the server log and invoice_seq.database (\"%s\").",
								 invoice_seq_database)));

			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 running ? 1000L : 100L,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(request_withdraw, Int32GetDatum(slotno));

	return outcome;
}

/*
 * End of a transaction that took one-step numbers.
 *
 * A prepared transaction could hold a one-step number for any length of
 * time, and its fate would be decided outside the session that took it, so
 * PREPARE TRANSACTION is refused after next_invoice_no().
 *
 * If the transaction aborts, or commits after rolling back a savepoint, some
 * of its numbers were not issued: tell the sequencer to look for them.  The
 * callback runs after the transaction has left the proc array, so a snapshot
 * that the sequencer takes after seeing the new epoch sees it ended.
 */
static void
one_step_xact_callback(XactEvent event, void *arg)
{
	if (!holds_one_step)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot PREPARE a transaction that took an invoice number with next_invoice_no()"),
					 errdetail("Holding a one-step invoice number across two-phase commit is not supported."),
					 errhint("Use reserve_invoice_no() and confirm_invoice_no() in transactions that are prepared.")));
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_COMMIT:
			if (event == XACT_EVENT_ABORT || one_step_subabort)
				pg_atomic_fetch_add_u64(&sequencer_shared->recycle_epoch, 1);
			holds_one_step = false;
			one_step_subabort = false;
			break;
		default:
			break;
	}
}

static void
one_step_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && holds_one_step)
		one_step_subabort = true;
}

/*
 * Common part of reserve_invoice_no(), reserve_invoice() (one_step false)
 * and next_invoice_no(), next_invoice() (one_step true).
 */
static void
request_number(FunctionCallInfo fcinfo, bool one_step, InvoiceSeries *series,
			   ReservedNumber *result)
{
	const char *what = one_step ? "next_invoice_no()" : "reserve_invoice_no()";
	char	   *name;
	char	   *key = NULL;
	char	   *role;
	char	   *dbname;
	FullTransactionId holder = InvalidFullTransactionId;
	Oid			save_userid;
	int			save_sec_context;
	LOCKTAG		tag;
	RequestError error;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("series must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	series_check_name(name);

	if (!one_step && !PG_ARGISNULL(1))
	{
		key = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (key[0] == '\0' || strlen(key) > ISEQ_MAX_KEY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid idempotency key for invoice series \"%s\": it has %zu bytes",
							name, strlen(key)),
					 errdetail("An idempotency key has 1 to %d bytes.", ISEQ_MAX_KEY)));
	}

	/*
	 * The reservation is a write, even though it is not the caller's.  (On
	 * a standby every transaction is read-only; say why.)
	 */
	PreventCommandDuringRecovery(what);
	PreventCommandIfReadOnly(what);

	invoice_seq_require_sequencer();

	dbname = get_database_name(MyDatabaseId);
	if (strcmp(dbname, invoice_seq_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invoice_seq sequencer serves database \"%s\", not \"%s\"",
						invoice_seq_database, dbname),
				 errhint("Set invoice_seq.database = '%s' in postgresql.conf and restart the server.",
						 dbname)));

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);
	if (!series_lookup(name, series))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invoice series \"%s\" does not exist", name)));
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();

	/* the sequencer acts with more rights than the caller: check them here */
	series_check_member(series, GetUserId());

	/*
	 * If our own transaction holds the series lock, the sequencer can never
	 * take it, and waiting for it would be waiting for ourselves.
	 */
	series_lock_tag(&tag, series->id);
	if (LockHeldByMe(&tag, ExclusiveLock))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot reserve a number of invoice series \"%s\" in the transaction that changed it",
						series->name),
				 errhint("Commit the transaction that called alter_series first.")));

	role = GetUserNameFromId(GetUserId(), false);

	/*
	 * The number of a one-step call belongs to our top-level transaction,
	 * which therefore needs its id before the sequencer records it.
	 */
	if (one_step)
	{
		holder = GetTopFullTransactionId();
		if (!callbacks_registered)
		{
			RegisterXactCallback(one_step_xact_callback, NULL);
			RegisterSubXactCallback(one_step_subxact_callback, NULL);
			callbacks_registered = true;
		}
		/* from here on, a number may exist whatever happens to the request */
		holds_one_step = true;
	}

	for (;;)
	{
		RequestOutcome outcome = request_reserve(series, key, holder, role,
												 result, &error);

		if (outcome == REQUEST_RESERVED)
			break;
		if (outcome == REQUEST_FAILED)
			ereport(ERROR,
					(errcode(error.sqlerrcode),
					 errmsg_internal("%s", error.message),
					 error.detail[0] ? errdetail_internal("%s", error.detail) : 0,
					 error.hint[0] ? errhint("%s", error.hint) : 0));
		series_wait_unlocked(series->id);
	}

	if (one_step)
	{
		SPI_connect();
		invoice_seq_become_owner(&save_userid, &save_sec_context);
		ledger_issue_held(series, holder, role, result);
		SetUserIdAndSecContext(save_userid, save_sec_context);
		SPI_finish();
		strlcpy(result->status, "issued", sizeof(result->status));
	}
}

/* invoice_seq.reserve_invoice_no(series, idempotency_key) RETURNS bigint */
Datum
invoice_seq_reserve_invoice_no(PG_FUNCTION_ARGS)
{
	InvoiceSeries series;
	ReservedNumber result;

	request_number(fcinfo, false, &series, &result);
	PG_RETURN_INT64(result.invoice_no);
}

/*
 * invoice_seq.reserve_invoice(series, idempotency_key)
 *		RETURNS (series, period, invoice_no, display_no, status, reserved_at)
 */
Datum
invoice_seq_reserve_invoice(PG_FUNCTION_ARGS)
{
	InvoiceSeries series;
	ReservedNumber result;
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	desc = invoice_seq_result_desc(fcinfo);

	request_number(fcinfo, false, &series, &result);

	values[0] = CStringGetTextDatum(series.name);
	values[1] = CStringGetTextDatum(result.period);
	values[2] = Int64GetDatum(result.invoice_no);
	values[3] = CStringGetTextDatum(result.display_no);
	values[4] = CStringGetTextDatum(result.status);
	values[5] = TimestampTzGetDatum(result.reserved_at);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* invoice_seq.next_invoice_no(series) RETURNS bigint */
Datum
invoice_seq_next_invoice_no(PG_FUNCTION_ARGS)
{
	InvoiceSeries series;
	ReservedNumber result;

	request_number(fcinfo, true, &series, &result);
	PG_RETURN_INT64(result.invoice_no);
}

/*
 * invoice_seq.next_invoice(series)
 *		RETURNS (series, period, invoice_no, display_no)
 */
Datum
invoice_seq_next_invoice(PG_FUNCTION_ARGS)
{
	InvoiceSeries series;
	ReservedNumber result;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	desc = invoice_seq_result_desc(fcinfo);

	request_number(fcinfo, true, &series, &result);

	values[0] = CStringGetTextDatum(series.name);
	values[1] = CStringGetTextDatum(result.period);
	values[2] = Int64GetDatum(result.invoice_no);
	values[3] = CStringGetTextDatum(result.display_no);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
