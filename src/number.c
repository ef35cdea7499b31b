/*-------------------------------------------------------------------------
 *
 * number.c
 *		The SQL functions that hand out numbers, next_invoice_no() and
 *		reserve_invoice_no(), and where each number is taken.
 *
 * A number is taken where it is asked for: the caller's backend takes it
 * from the allocator and records it in the caller's own transaction, so
 * that it exists exactly if that transaction commits.
 *
 *	next_invoice_no()		always: the number is issued when the caller
 *							commits, and free again if it does not.
 *	reserve_invoice_no()	when no client can see the number before the
 *							transaction's commit decides its fate: called by
 *							the client's own statement, which commits on its
 *							own (see can_reserve_here).  The commit happens
 *							before the statement's result is sent.
 *
 * Either way the commit is made durable (and replicated to a synchronous
 * standby) whatever synchronous_commit says: a number whose transaction
 * committed may be printed or sent at once, so a crash or a failover must
 * never hand it out again.
 *
 * Every other reservation (inside a transaction block, or from a function,
 * procedure, trigger or DO block) must survive the caller's rollback, so
 * it is made by the sequencer, in a transaction of its own (remote.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "replication/syncrep.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/lmgr.h"
#include "tcop/dest.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "caller.h"
#include "launch.h"
#include "ledger.h"
#include "pg_version_compat.h"
#include "remote.h"
#include "request.h"
#include "series.h"
#include "util.h"

PG_FUNCTION_INFO_V1(invoice_seq_reserve_invoice_no);
PG_FUNCTION_INFO_V1(invoice_seq_reserve_invoice);
PG_FUNCTION_INFO_V1(invoice_seq_next_invoice_no);
PG_FUNCTION_INFO_V1(invoice_seq_next_invoice);

typedef enum NumberKind
{
	NUMBER_ONE_STEP,			/* next_invoice_no(): issued at commit */
	NUMBER_RESERVE				/* reserve_invoice_no(): confirmed later */
} NumberKind;

/* Columns of reserve_invoice() and next_invoice(). */
enum
{
	RESERVE_COLS = 6,
	NEXT_COLS = 4
};

/*
 * Was this transaction's commit confirmed by the synchronous standbys, if
 * there are some?  A cancel of the wait for them (pg_cancel_backend(), a
 * client's cancel request) makes PostgreSQL return success with a warning,
 * the commit being local only: a failover could then lose the number and
 * hand it out again.
 */
static bool
commit_confirmed(void)
{
	int			mode;
	bool		defined;
	XLogRecPtr	confirmed;

	/*
	 * Without synchronous standbys, the common case, nothing waited: leave
	 * without the lock, on the same unlocked read PostgreSQL's own wait
	 * starts with (SyncRepWaitForLSN).
	 */
	if (!SyncRepRequested() ||
		!SYNC_STANDBYS_DEFINED((volatile WalSndCtlData *) WalSndCtl))
		return true;
	switch (synchronous_commit)
	{
		case SYNCHRONOUS_COMMIT_REMOTE_WRITE:
			mode = SYNC_REP_WAIT_WRITE;
			break;
		case SYNCHRONOUS_COMMIT_REMOTE_APPLY:
			mode = SYNC_REP_WAIT_APPLY;
			break;
		default:
			mode = SYNC_REP_WAIT_FLUSH;
			break;
	}
	/*
	 * Whether anyone waits is decided by the shared flag the checkpointer
	 * keeps, not by this backend's copy of synchronous_standby_names,
	 * which a reload may have changed (cleared to release the waiters).
	 */
	LWLockAcquire(SyncRepLock, LW_SHARED);
	defined = SYNC_STANDBYS_DEFINED(WalSndCtl);
	confirmed = WalSndCtl->lsn[mode];
	LWLockRelease(SyncRepLock);
	return !defined || confirmed >= XactLastCommitEnd;
}

/*
 * The commit is local only: end the session without an answer, as
 * PostgreSQL does when the wait is ended by pg_terminate_backend().  The
 * client sees a lost connection, the outcome it already handles ("retry
 * with the same key"), instead of a number that a failover could hand out
 * again.
 */
static void
end_without_answer(void)
{
	ereport(WARNING,
			(errcode(ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN),
			 errmsg("invoice_seq: the commit of an invoice number was not confirmed by the synchronous standby"),
			 errdetail("The wait for the standby was cancelled; the number is committed on this server only, and a failover could lose it."),
			 errhint("The connection is closed without an answer: retry with the same idempotency key, or look the number up, once the standby is back.")));
	whereToSendOutput = DestNone;
	ProcDiePending = true;
	InterruptPending = true;
}

/* This transaction recorded a number and must commit durably. */
static bool durable_commit = false;
static bool callback_registered = false;

/*
 * Just before the commit of a transaction that recorded a number: make the
 * commit wait for the WAL flush and for a synchronous standby, whatever
 * synchronous_commit was set to meanwhile.  A number whose commit returned
 * may be printed or sent at once; if a crash or a failover could lose its
 * row, the next caller would get the same number.
 */
static void
durable_commit_callback(XactEvent event, void *arg)
{
	if (!durable_commit)
		return;
	if (event == XACT_EVENT_PRE_COMMIT && synchronous_commit < SYNCHRONOUS_COMMIT_ON)
		(void) set_config_option("synchronous_commit", "on",
								 PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	if (event == XACT_EVENT_COMMIT && !commit_confirmed())
		end_without_answer();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		durable_commit = false;
}

static void
require_durable_commit(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(durable_commit_callback, NULL);
		callback_registered = true;
	}
	durable_commit = true;
	ForceSyncCommit();
}

/*
 * Can a reservation be recorded in the caller's transaction?  Only if no
 * client or code can learn the number before that transaction's commit
 * decides its fate: the function is called by the client's statement
 * itself, not from a function, procedure, trigger or DO block that could
 * show the number and then roll back (caller.c); and that statement
 * commits on its own, at once: not in a transaction block (explicit, or
 * implicit in a query string of several statements), not in a pipeline of
 * statements sharing one transaction, not in a subtransaction.
 */
static bool
can_reserve_here(FunctionCallInfo fcinfo)
{
	return !IsTransactionBlock() &&
		!(MyXactFlags & XACT_FLAGS_PIPELINING) &&
		GetCurrentTransactionNestLevel() == 1 &&
		caller_is_client_statement(fcinfo);
}

/* Read and check the arguments: the series, and the key of a reservation. */
static void
number_args(FunctionCallInfo fcinfo, NumberKind kind, char **name, char **key)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("series must not be NULL")));
	*name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	series_check_name(*name);

	*key = NULL;
	if (kind == NUMBER_RESERVE && !PG_ARGISNULL(1))
	{
		*key = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if ((*key)[0] == '\0' || strlen(*key) > ISEQ_MAX_KEY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid idempotency key for invoice series \"%s\": it has %zu bytes",
							*name, strlen(*key)),
					 errdetail("An idempotency key has 1 to %d bytes.", ISEQ_MAX_KEY)));
	}
}

/* One call of next_invoice_no() or reserve_invoice_no(), its arguments checked. */
typedef struct NumberCall
{
	NumberKind	kind;
	char	   *name;
	char	   *key;			/* NULL: none */
	bytea	   *app_digest;		/* NULL: none */
	Oid			roleid;			/* the caller */
	char	   *role;
	uint64		generation;		/* of series definitions, before the lookup */
} NumberCall;

/*
 * Look the series up and check that the caller may use it.  The caller is
 * connected to SPI as the extension's owner; with by_id, the series was
 * read before and is read again.
 */
static void
lookup_series(const NumberCall *call, InvoiceSeries *series, bool by_id)
{
	if (by_id ? !series_lookup_by_id(series->id, series) :
		!series_lookup(call->name, series))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invoice series \"%s\" does not exist", call->name),
				 by_id ? errdetail("It was dropped while the request waited.") : 0));
	/* the rest runs with more rights than the caller: check them first */
	series_check_member(series, call->roleid);
}

/*
 * Take a number in the caller's transaction.  The caller is connected to
 * SPI as the extension's owner.  Locks are taken in one order, the same in
 * the sequencer: the tables, the series, the key.
 */
static void
take_here(const NumberCall *call, InvoiceSeries *series, ReservedNumber *result)
{
	ledger_lock_tables();

	/*
	 * A change of the series that committed after we read it, while we
	 * waited for its lock or not, counts from now on: the series is read,
	 * and the caller's rights checked, again.
	 */
	if (series_lock_for_numbering(series->id) ||
		series_generation() != call->generation)
		lookup_series(call, series, true);
	if (call->key != NULL)
	{
		LOCKTAG		tag;

		key_lock_tag(&tag, series->id, call->key);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
		if (ledger_find_key(series, call->key, result, NULL))
			return;
	}
	ledger_take_number(series, call->key,
					   call->kind == NUMBER_ONE_STEP ? ENTRY_ISSUED : ENTRY_RESERVED,
					   call->role, invoice_seq_test_now(), call->app_digest, result);
	require_durable_commit();

	/*
	 * A reservation commits before its result reaches the client, even in
	 * the extended protocol.
	 */
	if (call->kind == NUMBER_RESERVE)
		MyXactFlags |= XACT_FLAGS_NEEDIMMEDIATECOMMIT;
}

/*
 * Common part of reserve_invoice_no(), reserve_invoice(), next_invoice_no()
 * and next_invoice().
 */
static void
take_number(FunctionCallInfo fcinfo, NumberKind kind, InvoiceSeries *series,
			ReservedNumber *result)
{
	const char *what = kind == NUMBER_ONE_STEP ? "next_invoice_no()" : "reserve_invoice_no()";
	NumberCall	call;
	bool		here;
	Oid			save_userid;
	int			save_sec_context;

	call.kind = kind;
	number_args(fcinfo, kind, &call.name, &call.key);
	/* next_invoice_no(series, app_digest): the digest the chain covers */
	call.app_digest = (kind == NUMBER_ONE_STEP && PG_NARGS() > 1 && !PG_ARGISNULL(1)) ?
		PG_GETARG_BYTEA_PP(1) : NULL;
	check_app_digest(call.app_digest);

	/* A number is a write, even when it is not the caller's. */
	PreventCommandDuringRecovery(what);
	PreventCommandIfReadOnly(what);
	request_require_preloaded();

	call.roleid = GetUserId();
	call.role = GetUserNameFromId(call.roleid, false);
	call.generation = series_generation();
	here = (kind == NUMBER_ONE_STEP || can_reserve_here(fcinfo));

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);
	lookup_series(&call, series, false);
	if (here)
		take_here(&call, series, result);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();

	if (!here)
		request_reserve_remote(series, call.key, call.roleid, result);
	launch_wake_sealer();
}

/*
 * The row of reserve_invoice() and next_invoice(): series, period,
 * invoice_no, display_no, and for a reservation, status and reserved_at.
 */
static Datum
number_row(FunctionCallInfo fcinfo, NumberKind kind)
{
	InvoiceSeries series;
	ReservedNumber result;
	TupleDesc	desc = invoice_seq_result_desc(fcinfo);
	Datum		values[RESERVE_COLS];
	bool		nulls[RESERVE_COLS] = {0};

	take_number(fcinfo, kind, &series, &result);

	values[0] = CStringGetTextDatum(series.name);
	values[1] = CStringGetTextDatum(result.period);
	values[2] = Int64GetDatum(result.invoice_no);
	values[3] = CStringGetTextDatum(result.display_no);
	if (kind == NUMBER_RESERVE)
	{
		values[4] = CStringGetTextDatum(entry_status_name(result.status));
		values[5] = TimestampTzGetDatum(result.reserved_at);
	}
	Assert(desc->natts == (kind == NUMBER_RESERVE ? RESERVE_COLS : NEXT_COLS));

	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/* The number alone: reserve_invoice_no() and next_invoice_no(). */
static int64
number_only(FunctionCallInfo fcinfo, NumberKind kind)
{
	InvoiceSeries series;
	ReservedNumber result;

	take_number(fcinfo, kind, &series, &result);
	return result.invoice_no;
}

/* invoice_seq.reserve_invoice_no(series, idempotency_key) RETURNS bigint */
Datum
invoice_seq_reserve_invoice_no(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(number_only(fcinfo, NUMBER_RESERVE));
}

/*
 * invoice_seq.reserve_invoice(series, idempotency_key)
 *		RETURNS (series, period, invoice_no, display_no, status, reserved_at)
 */
Datum
invoice_seq_reserve_invoice(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(number_row(fcinfo, NUMBER_RESERVE));
}

/* invoice_seq.next_invoice_no(series) RETURNS bigint */
Datum
invoice_seq_next_invoice_no(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(number_only(fcinfo, NUMBER_ONE_STEP));
}

/*
 * invoice_seq.next_invoice(series)
 *		RETURNS (series, period, invoice_no, display_no)
 */
Datum
invoice_seq_next_invoice(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(number_row(fcinfo, NUMBER_ONE_STEP));
}
