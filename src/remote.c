/*-------------------------------------------------------------------------
 *
 * remote.c
 *		A reservation made by the sequencer: how a backend asks its
 *		database's sequencer for a number and waits for the answer.
 *
 * Each backend owns the request slot indexed by its pgprocno.  It fills the
 * slot, appends it to its database's queue, starts that database's
 * sequencer if none runs (launch.c), sets the sequencer's latch and sleeps
 * on its own latch until the sequencer marks the slot DONE.  If the backend
 * stops waiting (cancel, terminate, timeout) it withdraws a queued request,
 * or marks a request in progress as abandoned: the sequencer completes it
 * anyway, so a reservation that was made stays valid and a retry with the
 * same idempotency key finds it.
 *
 * If a lock the sequencer needs is busy (an uncommitted alter_series holds
 * the series, or another transaction is recording the same idempotency
 * key), the sequencer does not wait: it answers "locked", and the backend
 * waits for that lock itself before asking again.
 *
 * Only reservations made inside a transaction block come here: they must
 * survive the caller's rollback.  Everything else is numbered in the
 * caller's own transaction (number.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "launch.h"
#include "pg_version_compat.h"
#include "remote.h"
#include "series.h"
#include "util.h"

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
			request_queue_remove(&shared->databases[slot->database], slotno);
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
	REQUEST_BUSY				/* retry once *busy is free */
} RequestOutcome;

/*
 * Fill our slot with a request, queue it on our database's entry and wake
 * its sequencer.  Returns the entry.
 */
static DatabaseSequencer *
submit_request(int slotno, const InvoiceSeries *series, const char *key,
			   Oid roleid)
{
	SequencerShared *shared = sequencer_shared;
	SequencerRequest *slot = &shared->slots[slotno];
	DatabaseSequencer *db;
	Latch	   *sequencer_latch;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	db = launch_entry(MyDatabaseId);
	if (db == NULL)
	{
		LWLockRelease(shared->lock);
		launch_entry_error();
	}
	slot->database = (int) (db - shared->databases);
	slot->abandoned = false;
	slot->committing = false;
	slot->submitted_at = GetCurrentTimestamp();
	slot->request.series_id = series->id;
	strlcpy(slot->request.series, series->name, sizeof(slot->request.series));
	strlcpy(slot->request.role, GetUserNameFromId(roleid, false),
			sizeof(slot->request.role));
	slot->request.roleid = roleid;
	slot->request.has_key = (key != NULL);
	strlcpy(slot->request.key, key ? key : "", sizeof(slot->request.key));
	slot->request.clock = invoice_seq_test_now();
	slot->state = REQUEST_QUEUED;
	request_queue_push(db, slotno);
	db->last_used = slot->submitted_at;
	sequencer_latch = db->latch;
	LWLockRelease(shared->lock);

	if (sequencer_latch)
		SetLatch(sequencer_latch);
	return db;
}

/*
 * If the sequencer has answered, copy the answer out and free the slot.
 * Caller holds the lock exclusively.
 */
static bool
take_answer(SequencerRequest *slot, ReservedNumber *result, RequestError *error,
			RequestBusy *busy, RequestOutcome *outcome)
{
	if (slot->state != REQUEST_DONE)
		return false;
	if (slot->ok)
	{
		*outcome = REQUEST_RESERVED;
		memcpy(result, &slot->result, sizeof(ReservedNumber));
	}
	else if (slot->busy.lock != REQUEST_LOCK_NONE)
	{
		*outcome = REQUEST_BUSY;
		*busy = slot->busy;
	}
	else
	{
		*outcome = REQUEST_FAILED;
		memcpy(error, &slot->error, sizeof(RequestError));
	}
	slot->state = REQUEST_FREE;
	return true;
}

/*
 * A request that is still queued while no sequencer runs waits at most
 * invoice_seq.sequencer_timeout for one to start; then it is withdrawn and
 * this returns true.  Once the sequencer has taken a request, it always
 * answers, even if it exits.  Caller holds the lock exclusively.
 */
static bool
give_up_waiting(DatabaseSequencer *db, int slotno, bool running,
				TimestampTz *absent_since)
{
	SequencerRequest *slot = &sequencer_shared->slots[slotno];
	TimestampTz now;

	if (running || slot->state != REQUEST_QUEUED)
	{
		*absent_since = 0;
		return false;
	}
	now = GetCurrentTimestamp();
	if (*absent_since == 0)
		*absent_since = now;
	if (!TimestampDifferenceExceeds(*absent_since, now,
									invoice_seq_sequencer_timeout))
		return false;
	request_queue_remove(db, slotno);
	slot->state = REQUEST_FREE;
	return true;
}

/*
 * Hand a reservation request to the sequencer and wait for its answer.
 */
static RequestOutcome
request_reserve(const InvoiceSeries *series, const char *key, Oid roleid,
				ReservedNumber *result, RequestError *error, RequestBusy *busy)
{
	SequencerShared *shared = sequencer_shared;
	int			slotno = MyProcNumber;
	SequencerRequest *slot;
	DatabaseSequencer *db;
	RequestOutcome outcome = REQUEST_FAILED;

	if (slotno < 0 || slotno >= shared->nslots)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this process cannot reserve invoice numbers"),
				 errdetail("Its process number %d has no request slot.", slotno)));
	slot = &shared->slots[slotno];

	wait_for_free_slot(slot);
	db = submit_request(slotno, series, key, roleid);

	PG_ENSURE_ERROR_CLEANUP(request_withdraw, Int32GetDatum(slotno));
	{
		TimestampTz absent_since = 0;

		for (;;)
		{
			bool		answered;
			bool		running;
			bool		given_up = false;

			LWLockAcquire(shared->lock, LW_EXCLUSIVE);
			answered = take_answer(slot, result, error, busy, &outcome);
			running = (db->state == SEQUENCER_RUNNING);
			if (!answered)
				given_up = give_up_waiting(db, slotno, running, &absent_since);
			LWLockRelease(shared->lock);

			if (answered)
				break;
			if (given_up)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("invoice_seq sequencer is not running"),
						 errdetail("No number of series \"%s\" was reserved.", series->name),
						 errhint("The sequencer of this database did not start within invoice_seq.sequencer_timeout; check the server log.")));
			if (!running)
				launch_sequencer_if_needed(MyDatabaseId);

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

/* A key this transaction is recording cannot be reserved by the sequencer. */
static pg_noreturn void
key_recorded_here(const InvoiceSeries *series, const char *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("idempotency key \"%s\" of invoice series \"%s\" is being recorded by this transaction",
					key, series->name),
			 errdetail("The number reserved under it is not committed yet, so it cannot be reserved again in a transaction of its own."),
			 errhint("Use the number this transaction reserved, or reserve again after it commits.")));
}

/* Does this transaction hold the lock, in either of the modes we take it in? */
static bool
lock_held_here(const LOCKTAG *tag)
{
	return LockHeldByMe(tag, RowExclusiveLock, false) ||
		LockHeldByMe(tag, ExclusiveLock, false);
}

/*
 * The sequencer found the series lock, a key lock or a row busy, and it
 * never waits for another transaction.  Wait for it here, as an ordinary
 * waiter: the wait shows in pg_locks, the deadlock detector sees it, and
 * our lock_timeout and statement_timeout bound it.  Then the sequencer is
 * asked again.
 *
 * If what it found busy is held by this very transaction, the sequencer
 * could never get it: waiting would never end.
 *	- The series lock, which we hold to number (we took a number of the
 *	  series in our own transaction): the sequencer was stopped by an
 *	  alter_series() or drop_series() queued behind us, which waits for our
 *	  transaction to end.  That is a deadlock; we end it (40P01).
 *	- A key lock, or the row of a key: our own transaction is recording the
 *	  key, and has not committed it (55000).
 */
static void
wait_until_free(const InvoiceSeries *series, const char *key,
				const RequestBusy *busy)
{
	LOCKTAG		tag;

	if (busy->lock == REQUEST_LOCK_XACT)
	{
		if (TransactionIdIsCurrentTransactionId(busy->xid))
			key_recorded_here(series, key);
		XactLockTableWait(busy->xid, NULL, NULL, XLTW_None);
		return;
	}
	if (busy->lock == REQUEST_LOCK_SERIES)
	{
		series_lock_tag(&tag, series->id);
		if (series_locked_here(series->id))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
					 errmsg("reserving a number of invoice series \"%s\" would deadlock",
							series->name),
					 errdetail("This transaction holds numbers of the series, and a change of the series (alter_series, drop_series or close_period) waits for it to end; the reservation would wait for that change."),
					 errhint("Retry the transaction.")));
	}
	else
	{
		key_lock_tag(&tag, series->id, key);
		if (lock_held_here(&tag))
			key_recorded_here(series, key);
	}
	wait_for_lock(&tag);
}

/*
 * Reserve a number of a series through the sequencer, in a transaction of
 * its own that commits at once, and wait for it.  The caller has checked
 * everything it can check alone, the library's preloading and the role's
 * membership included; the sequencer checks the membership again, under
 * the series lock.
 */
void
request_reserve_remote(const InvoiceSeries *series, const char *key,
					   Oid roleid, ReservedNumber *result)
{
	LOCKTAG		tag;

	/*
	 * If our own transaction holds the series lock exclusively (it changed
	 * the series), the sequencer can never take it, and waiting for it
	 * would be waiting for ourselves.
	 */
	series_lock_tag(&tag, series->id);
	if (LockHeldByMe(&tag, ExclusiveLock, false))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot reserve a number of invoice series \"%s\" in the transaction that changed it",
						series->name),
				 errhint("Commit the transaction that called alter_series first.")));

	for (;;)
	{
		RequestError error;
		RequestBusy busy = {REQUEST_LOCK_NONE, InvalidTransactionId};
		RequestOutcome outcome = request_reserve(series, key, roleid, result,
												 &error, &busy);

		if (outcome == REQUEST_RESERVED)
			return;
		if (outcome == REQUEST_FAILED)
			ereport(ERROR,
					(errcode(error.sqlerrcode),
					 errmsg_internal("%s", error.message),
					 error.detail[0] ? errdetail_internal("%s", error.detail) : 0,
					 error.hint[0] ? errhint("%s", error.hint) : 0));
		wait_until_free(series, key, &busy);
	}
}
