/*-------------------------------------------------------------------------
 *
 * ledger.c
 *		The ledger: numbers recorded in the transaction that takes them, and
 *		the transitions reserved -> issued and reserved -> voided (run in
 *		the caller's transaction).
 *
 * Every number handed out has exactly one row in invoice_seq.ledger_entry,
 * keyed by (series_id, period, invoice_no).  The number comes from the
 * allocator (alloc.c), and its row is inserted by the same transaction
 * that took it: the caller's for next_invoice_no() and for a reservation
 * made outside a transaction block, the sequencer's for one made inside.
 * If that transaction aborts, the row never existed and the allocator
 * hands the number out again; so the committed ledger, plus the free
 * numbers, is always dense.
 *
 * Reads that only serve our own logic (finding an entry, an idempotency
 * key) use a dirty snapshot through the index, and then lock or update the
 * one row by its tuple id, so that a SERIALIZABLE caller takes no
 * predicate lock on the ledger's index pages.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "alloc.h"
#include "ledger.h"
#include "ledger_am.h"
#include "ledger_write.h"
#include "preset.h"
#include "seal_due.h"
#include "series.h"
#include "sqlstate.h"
#include "util.h"

PG_FUNCTION_INFO_V1(invoice_seq_confirm_invoice_no);
PG_FUNCTION_INFO_V1(invoice_seq_void_invoice_no);

static SPIPlanPtr key_plan = NULL;
static SPIPlanPtr ended_plan = NULL;

static void void_free_number(const InvoiceSeries *series, const char *period,
							 const TakenNumber *taken, TimestampTz now,
							 const char *reason);

/* Free numbers of ended periods voided by one first use of a new period. */
#define ENDED_BATCH		1000

/* A new ledger row, as ledger_insert() writes it. */
typedef struct NewEntry
{
	const InvoiceSeries *series;
	const char *period;
	int64		invoice_no;
	const char *display_no;
	EntryStatus status;
	const char *key;			/* NULL: none */
	const char *role;
	TimestampTz now;
	const char *void_reason;	/* for ENTRY_VOIDED */
	const bytea *app_digest;	/* NULL: none */
} NewEntry;


/* "invoice number 7 of series "INV"", with the period if there is one. */
char *
number_label(const char *series, const char *period, int64 invoice_no)
{
	if (period[0] == '\0')
		return psprintf("invoice number " INT64_FORMAT " of series \"%s\"",
						invoice_no, series);
	return psprintf("invoice number " INT64_FORMAT " of series \"%s\" in period %s",
					invoice_no, series, period);
}

/* yyyymmdd as 'yyyy-mm-dd'. */
static char *
day_text(int day)
{
	return psprintf("%04d-%02d-%02d", day / 10000, day / 100 % 100, day % 100);
}

/*
 * Insert a ledger row in the current transaction, as the owner.  A row
 * with this number already there was put in the ledger behind the
 * allocator's back (by hand, or by a restore into a live server): the
 * allocator forgets the number and reads the ledger again.
 */
static void
ledger_insert(const NewEntry *e)
{
	Datum		values[ENTRY_NATTS];
	bool		isnull[ENTRY_NATTS];
	MemoryContext oldcontext = CurrentMemoryContext;
	Relation	rel;

	memset(values, 0, sizeof(values));
	memset(isnull, true, sizeof(isnull));
#define SET_ATT(att, datum) \
	(values[(att) - 1] = (datum), isnull[(att) - 1] = false)
	SET_ATT(ENTRY_ATT_SERIES_ID, Int32GetDatum(e->series->id));
	SET_ATT(ENTRY_ATT_PERIOD, CStringGetTextDatum(e->period));
	SET_ATT(ENTRY_ATT_INVOICE_NO, Int64GetDatum(e->invoice_no));
	SET_ATT(ENTRY_ATT_DISPLAY_NO, CStringGetTextDatum(e->display_no));
	SET_ATT(ENTRY_ATT_STATUS, CStringGetTextDatum(entry_status_name(e->status)));
	SET_ATT(ENTRY_ATT_RESERVED_AT, TimestampTzGetDatum(e->now));
	SET_ATT(ENTRY_ATT_RESERVED_BY, CStringGetTextDatum(e->role));
	if (e->key != NULL)
		SET_ATT(ENTRY_ATT_IDEMPOTENCY_KEY, CStringGetTextDatum(e->key));
	if (e->status == ENTRY_ISSUED)
	{
		/* a one-step number names the transaction that issued it */
		SET_ATT(ENTRY_ATT_HOLDER_XID,
				FullTransactionIdGetDatum(GetTopFullTransactionId()));
		SET_ATT(ENTRY_ATT_CONFIRMED_AT, TimestampTzGetDatum(e->now));
		SET_ATT(ENTRY_ATT_CONFIRMED_BY, CStringGetTextDatum(e->role));
	}
	if (e->status == ENTRY_VOIDED)
	{
		SET_ATT(ENTRY_ATT_VOIDED_AT, TimestampTzGetDatum(e->now));
		SET_ATT(ENTRY_ATT_VOIDED_BY, CStringGetTextDatum(AUTO_VOIDED_BY));
		SET_ATT(ENTRY_ATT_VOID_REASON, CStringGetTextDatum(e->void_reason));
	}
	if (e->app_digest != NULL)
		SET_ATT(ENTRY_ATT_APP_DIGEST, PointerGetDatum(e->app_digest));
#undef SET_ATT

	rel = table_open(invoice_seq_ledger_relid(), RowExclusiveLock);
	PG_TRY();
	{
		ledger_write_insert(rel, values, isnull);
		if (e->status != ENTRY_RESERVED)
			seal_due_note(e->series->id, e->period);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION &&
			edata->constraint_name != NULL &&
			strcmp(edata->constraint_name, "ledger_entry_pkey") == 0)
			alloc_forget(e->series, e->period, e->invoice_no);
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	table_close(rel, NoLock);
}

/*
 * What find_row() does about a row that a running transaction is inserting
 * or changing.
 */
typedef enum FindMode
{
	FIND_TO_LOCK,				/* wait for that transaction, then look again:
								 * confirm and void lock the row next */
	FIND_TO_READ,				/* read the version that an updater changes
								 * (the last committed one); wait only for an
								 * inserter */
	FIND_TO_READ_NOWAIT			/* the same, but never wait: report the
								 * inserter instead (the sequencer) */
} FindMode;

/*
 * Find the one row that an index scan with "keys" finds, without predicate
 * locks: a dirty snapshot sees committed and in-progress versions.  A row
 * that a running transaction inserts, or (for FIND_TO_LOCK) changes, is
 * waited for, and looked up again.  Returns false if there is no such row,
 * or if *busy names a transaction to wait for (FIND_TO_READ_NOWAIT);
 * *changed says whether a transaction we waited for committed a change of
 * the row.
 */
static bool
find_row(const char *index_name, ScanKey keys, int nkeys, FindMode mode,
		 ItemPointer tid, bool *changed, TransactionId *busy)
{
	Relation	rel = table_open(invoice_seq_ledger_relid(), AccessShareLock);
	Oid			indexoid = get_relname_relid(index_name, RelationGetNamespace(rel));
	bool		found = false;

	*changed = false;
	*busy = InvalidTransactionId;
	for (;;)
	{
		SnapshotData dirty;
		SysScanDesc scan;
		HeapTuple	tuple;
		TransactionId wait_for = InvalidTransactionId;
		ScanKeyData scankeys[INDEX_MAX_KEYS];

		/* systable_beginscan() rewrites its keys: give it a fresh copy */
		Assert(nkeys <= INDEX_MAX_KEYS);
		memcpy(scankeys, keys, sizeof(ScanKeyData) * nkeys);
		InitDirtySnapshot(dirty);
		scan = systable_beginscan(rel, indexoid, true, &dirty, nkeys, scankeys);
		while ((tuple = systable_getnext(scan)) != NULL)
		{
			/*
			 * The new version of a row that a running transaction updates
			 * (not HOT, so it has an index entry of its own): to read, the
			 * version it replaces is the one to find.
			 */
			if (mode != FIND_TO_LOCK && TransactionIdIsValid(dirty.xmin) &&
				(tuple->t_data->t_infomask & HEAP_UPDATED))
				continue;
			*tid = tuple->t_self;
			found = true;
			if (TransactionIdIsValid(dirty.xmin))
				wait_for = dirty.xmin;
			else if (mode == FIND_TO_LOCK)
				wait_for = dirty.xmax;
			break;
		}
		systable_endscan(scan);
		if (!TransactionIdIsValid(wait_for))
			break;
		found = false;
		if (mode == FIND_TO_READ_NOWAIT)
		{
			*busy = wait_for;
			break;
		}
		XactLockTableWait(wait_for, rel, tid, XLTW_None);
		/* a transaction that rolled back changed nothing */
		*changed |= TransactionIdDidCommit(wait_for);
	}
	table_close(rel, AccessShareLock);
	return found;
}

/* The first two keys of the primary key: the series and the period. */
static void
period_keys(ScanKey keys, int32 series_id, const char *period)
{
	ScanKeyInit(&keys[0], ENTRY_ATT_SERIES_ID, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(series_id));
	invoice_seq_text_key(&keys[1], ENTRY_ATT_PERIOD, period);
}

/*
 * Read the one row that an index scan with "keys" finds (find_row), through
 * "plan", a statement on "ctid = $1".  If the row changed between the two,
 * look again.  Returns false if there is no such row, or if *busy names a
 * transaction to wait for; else SPI_tuptable holds it, and *changed says
 * whether a transaction we waited for committed a change of it.
 */
static bool
fetch_row(const char *index_name, ScanKey keys, int nkeys, FindMode mode,
		  SPIPlanPtr plan, const char *what, bool *changed, TransactionId *busy)
{
	ItemPointerData tid;
	bool		changed_now;
	int			rc;

	*changed = false;
	do
	{
		if (!find_row(index_name, keys, nkeys, mode, &tid, &changed_now, busy))
			return false;
		*changed |= changed_now;
		rc = invoice_seq_execute(plan, (Datum[1]) {PointerGetDatum(&tid)},
								 NULL, false, 1);
		invoice_seq_spi_check(rc, SPI_OK_SELECT, what);
	} while (SPI_processed == 0);
	return true;
}

/*
 * The nearest issued number of (series, period) above (or below) invoice_no,
 * and its date, read through the primary key with a dirty snapshot: no
 * predicate lock, and a number being issued by a transaction still running
 * counts as issued.  Returns false if there is none.
 */
static bool
nearest_issued(const InvoiceSeries *series, const char *period,
			   int64 invoice_no, bool above, int64 *other, TimestampTz *dated)
{
	Relation	rel = table_open(invoice_seq_ledger_relid(), AccessShareLock);
	Relation	index = index_open(get_relname_relid("ledger_entry_pkey",
													 RelationGetNamespace(rel)),
								   AccessShareLock);
	ScanKeyData keys[3];
	SnapshotData dirty;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	period_keys(keys, series->id, period);
	ScanKeyInit(&keys[2], ENTRY_ATT_INVOICE_NO,
				above ? BTGreaterStrategyNumber : BTLessStrategyNumber,
				above ? F_INT8GT : F_INT8LT, Int64GetDatum(invoice_no));
	InitDirtySnapshot(dirty);
	scan = systable_beginscan_ordered(rel, index, &dirty, 3, keys);
	while ((tuple = systable_getnext_ordered(scan, above ? ForwardScanDirection :
											 BackwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		status = heap_getattr(tuple, ENTRY_ATT_STATUS,
										  RelationGetDescr(rel), &isnull);

		if (parse_entry_status(TextDatumGetCString(status)) != ENTRY_ISSUED)
			continue;
		*other = DatumGetInt64(heap_getattr(tuple, ENTRY_ATT_INVOICE_NO,
											RelationGetDescr(rel), &isnull));
		*dated = DatumGetTimestampTz(heap_getattr(tuple, ENTRY_ATT_CONFIRMED_AT,
												  RelationGetDescr(rel), &isnull));
		found = true;
		break;
	}
	systable_endscan_ordered(scan);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * If a transaction still running is inserting the row that "tuple" is
 * (the dirty snapshot that found it says so), describe it in *held.
 */
static bool
held_row(Relation rel, HeapTuple tuple, const SnapshotData *dirty,
		 HeldNumber *held)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		isnull;

	/* an updated version is a committed number being confirmed or voided */
	if (!TransactionIdIsValid(dirty->xmin) ||
		(tuple->t_data->t_infomask & HEAP_UPDATED))
		return false;
	held->invoice_no = DatumGetInt64(heap_getattr(tuple, ENTRY_ATT_INVOICE_NO,
												  desc, &isnull));
	held->taken_at = DatumGetTimestampTz(heap_getattr(tuple, ENTRY_ATT_RESERVED_AT,
													  desc, &isnull));
	held->taken_by = TextDatumGetCString(heap_getattr(tuple, ENTRY_ATT_RESERVED_BY,
													  desc, &isnull));
	(void) heap_getattr(tuple, ENTRY_ATT_HOLDER_XID, desc, &isnull);
	held->one_step = !isnull;
	return true;
}

/*
 * Is a running transaction inserting the row of (series, period,
 * invoice_no)?  Read with a dirty snapshot: no waiting, no predicate lock.
 */
bool
ledger_held(int32 series_id, const char *period, int64 invoice_no,
			HeldNumber *held)
{
	Relation	rel = table_open(invoice_seq_ledger_relid(), AccessShareLock);
	ScanKeyData keys[3];
	SnapshotData dirty;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	period_keys(keys, series_id, period);
	ScanKeyInit(&keys[2], ENTRY_ATT_INVOICE_NO, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(invoice_no));
	InitDirtySnapshot(dirty);
	scan = systable_beginscan(rel, get_relname_relid("ledger_entry_pkey",
													 RelationGetNamespace(rel)),
							  true, &dirty, 3, keys);
	if ((tuple = systable_getnext(scan)) != NULL)
		found = held_row(rel, tuple, &dirty, held);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The numbers that running transactions hold above every number committed
 * before "snapshot" in (series, period), highest first, passed to fn: a
 * backward scan of the primary key with a dirty snapshot, which stops at
 * the first row that "snapshot" sees.
 */
void
ledger_held_at_top(int32 series_id, const char *period, Snapshot snapshot,
				   HeldNumberFn fn, void *arg)
{
	Relation	rel = table_open(invoice_seq_ledger_relid(), AccessShareLock);
	Relation	index = index_open(get_relname_relid("ledger_entry_pkey",
													 RelationGetNamespace(rel)),
								   AccessShareLock);
	ScanKeyData keys[2];
	SnapshotData dirty;
	SysScanDesc scan;
	HeapTuple	tuple;
	HeldNumber	held;

	period_keys(keys, series_id, period);
	InitDirtySnapshot(dirty);
	scan = systable_beginscan_ordered(rel, index, &dirty, 2, keys);
	while ((tuple = systable_getnext_ordered(scan, BackwardScanDirection)) != NULL)
	{
		if (held_row(rel, tuple, &dirty, &held))
			fn(&held, arg);
		else if (!XidInMVCCSnapshot(HeapTupleHeaderGetRawXmin(tuple->t_data), snapshot))
			break;
	}
	systable_endscan_ordered(scan);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
}

/*
 * Would issuing invoice_no of (series, period) at "when" break the
 * chronological rule: a higher number never carries an earlier day than a
 * lower one?  With the rule holding for the rest of the period, the
 * nearest issued number on each side is enough.
 *
 * Returns NULL if there is no conflict, else a sentence that names the
 * conflicting number.
 */
static char *
chronology_conflict(const InvoiceSeries *series, const char *period,
					int64 invoice_no, TimestampTz when)
{
	int			day = series_day(series, when);
	int			side;

	for (side = 0; side < 2; side++)
	{
		bool		above = (side == 0);
		int64		other;
		TimestampTz dated;
		int			other_day;

		if (!nearest_issued(series, period, invoice_no, above, &other, &dated))
			continue;
		other_day = series_day(series, dated);
		if (above ? other_day < day : other_day > day)
			return psprintf("Number " INT64_FORMAT " is dated %s, and number " INT64_FORMAT " would be dated %s.",
							other, day_text(other_day), invoice_no, day_text(day));
	}
	return NULL;
}

/*
 * Find the number reserved under an idempotency key.  A key whose number
 * was voided is refused: its result is dead, and the caller must take a new
 * key (seed 002).  The caller holds the key lock, so no other transaction
 * can be recording the same key; one that confirms or voids the key's
 * number is not waited for: the key, its number and its period never
 * change, and the status returned is the last committed one.  With busy
 * (the sequencer, which never waits for another transaction), a row still
 * being inserted is not waited for either: *busy names its transaction,
 * and false is returned.
 */
bool
ledger_find_key(const InvoiceSeries *series, const char *key,
				ReservedNumber *result, TransactionId *busy)
{
	ScanKeyData keys[2];
	bool		changed;
	Oid			argtype = TIDOID;
	SPIPlanPtr	plan;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	TransactionId busy_here;

	ScanKeyInit(&keys[0], ENTRY_ATT_SERIES_ID, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(series->id));
	invoice_seq_text_key(&keys[1], ENTRY_ATT_IDEMPOTENCY_KEY, key);

	plan = invoice_seq_plan(&key_plan,
							"SELECT period, invoice_no, display_no, status, reserved_at"
							" FROM invoice_seq.ledger_entry"
							" WHERE ctid OPERATOR(pg_catalog.=) $1",
							1, &argtype);
	if (!fetch_row("ledger_entry_idempotency_key", keys, 2,
				   busy ? FIND_TO_READ_NOWAIT : FIND_TO_READ, plan,
				   "idempotency key lookup", &changed, busy ? busy : &busy_here))
		return false;

	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	strlcpy(result->period, SPI_getvalue(tuple, desc, 1), sizeof(result->period));
	result->invoice_no = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
	strlcpy(result->display_no, SPI_getvalue(tuple, desc, 3),
			sizeof(result->display_no));
	result->status = parse_entry_status(SPI_getvalue(tuple, desc, 4));
	result->reserved_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 5, &isnull));

	if (result->status == ENTRY_VOIDED)
		ereport(ERROR,
				(errcode(ERRCODE_ISEQ_KEY_VOIDED),
				 errmsg("idempotency key \"%s\" belongs to voided %s",
						key, number_label(series->name, result->period,
										  result->invoice_no)),
				 errdetail("A voided number is never handed out again."),
				 errhint("Use a new idempotency key for a new attempt.")));
	return true;
}

/*
 * A free number of a chronological series whose limit (see TakenNumber) is
 * on an earlier day than its take can no longer be issued in date order: a
 * number above it is dated that earlier day.  It is voided instead, in the
 * same transaction (if that aborts, the number is free again).
 */
static bool
void_if_out_of_order(const InvoiceSeries *series, const char *period,
					 const TakenNumber *taken)
{
	if (!taken->recycled || !series->chronological ||
		TIMESTAMP_NOT_FINITE(taken->limit) ||
		series_day(series, taken->limit) >= series_day(series, taken->at))
		return false;

	void_free_number(series, period, taken, taken->at,
					 psprintf("not issued: the transaction that took it did not commit, and issuing it now would break chronological order (a higher number is dated %s)",
							  day_text(series_day(series, taken->limit))));
	return true;
}

/* Record a free number that can never be issued as voided, by us. */
static void
void_free_number(const InvoiceSeries *series, const char *period,
				 const TakenNumber *taken, TimestampTz now, const char *reason)
{
	NewEntry	e;
	char		display_no[ISEQ_MAX_DISPLAY + 1];

	/* rendered as of its own period: when it was taken, if known */
	series_render(series, taken->invoice_no,
				  taken->dated != 0 ? taken->dated : series_period_start(series, period),
				  display_no);
	memset(&e, 0, sizeof(e));
	e.series = series;
	e.period = period;
	e.invoice_no = taken->invoice_no;
	e.display_no = display_no;
	e.status = ENTRY_VOIDED;
	e.role = AUTO_VOIDED_BY;
	e.now = now;
	e.void_reason = reason;
	ledger_insert(&e);
}

/*
 * Void a number without a row that close_period() found free, claiming it
 * from the allocator first, so that it is free again if the closing
 * transaction aborts.  The caller holds the series lock exclusively.
 */
void
ledger_void_free(const InvoiceSeries *series, const char *period,
				 int64 invoice_no, TimestampTz now, const char *reason)
{
	TakenNumber taken;

	(void) alloc_claim(series, period, invoice_no, true, &taken);
	void_free_number(series, period, &taken, now, reason);
}

/*
 * The numbers without a row of the series' periods before "period", at most
 * ENDED_BATCH of them, in period and number order.  Returns how many.
 */
static uint64
read_ended_holes(const InvoiceSeries *series, const char *period,
				 char ***periods, int64 **numbers)
{
	Oid			argtypes[4] = {INT4OID, TEXTOID, INT8OID, INT4OID};
	Datum		values[4];
	SPIPlanPtr	plan;
	uint64		n;
	int			rc;

	values[0] = Int32GetDatum(series->id);
	values[1] = CStringGetTextDatum(period);
	values[2] = Int64GetDatum(series->start_at);
	values[3] = Int32GetDatum(ENDED_BATCH);
	plan = invoice_seq_plan(&ended_plan,
							"SELECT e.period, g.n FROM"
							" (SELECT period, invoice_no,"
							"         pg_catalog.lag(invoice_no) OVER (PARTITION BY period"
							"                                          ORDER BY invoice_no) AS prev"
							"  FROM invoice_seq.ledger_entry"
							"  WHERE series_id OPERATOR(pg_catalog.=) $1"
							"  AND period OPERATOR(pg_catalog.<) $2) e,"
							" pg_catalog.generate_series(COALESCE(e.prev OPERATOR(pg_catalog.+) 1, $3),"
							"                            e.invoice_no OPERATOR(pg_catalog.-) 1) AS g(n)"
							" ORDER BY 1, 2 LIMIT $4",
							4, argtypes);
	rc = invoice_seq_execute(plan, values, NULL, false, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "finding numbers of ended periods");

	/* the inserts that follow reuse SPI_tuptable: copy the numbers out */
	n = SPI_processed;
	*periods = palloc(sizeof(char *) * Max(n, 1));
	*numbers = palloc(sizeof(int64) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		(*periods)[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		(*numbers)[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 2, &isnull));
	}
	return n;
}

/* Ended periods one transaction sweeps, at most (void_ended_periods). */
#define ISEQ_SWEEP_PERIODS		16

/*
 * The first numbers of a period since the allocator read that period from
 * the ledger, until a transaction that took one and swept them all commits:
 * free numbers of the series' earlier periods can never be issued (a number
 * is dated in its period), so they are voided, in this transaction.
 * Numbers of an ended period still held by a running transaction are left
 * to it.
 *
 * Sweeping is housekeeping, and must cost the caller little: one
 * transaction sweeps at most ISEQ_SWEEP_PERIODS ended periods.  What is
 * left is swept by the next takers of the period.
 */
static void
void_ended_periods(const InvoiceSeries *series, const char *period,
				   TimestampTz now)
{
	char	  **periods;
	int64	   *numbers;
	uint64		n;
	uint64		i;
	int			nperiods = 0;

	if (series->reset == SERIES_RESET_NEVER)
		return;
	n = read_ended_holes(series, period, &periods, &numbers);
	for (i = 0; i < n; i++)
	{
		TakenNumber taken;

		if ((i == 0 || strcmp(periods[i], periods[i - 1]) != 0) &&
			++nperiods > ISEQ_SWEEP_PERIODS)
			break;
		if (alloc_claim(series, periods[i], numbers[i], false, &taken))
			void_free_number(series, periods[i], &taken, now,
							 "not issued: the transaction that took it did not commit, and its period has ended");
	}
	if (i == n && n < ENDED_BATCH)
		alloc_sweep_done(series, period);
}

/*
 * Lock the tables a number is recorded in, as the INSERT would, before the
 * series lock and the key lock.  So a DDL or LOCK TABLE on them that
 * conflicts holds back a taker here, as an ordinary lock waiter, before it
 * holds anything; and once past here, nothing that reads the period for
 * the allocator (alloc.c) can wait for such a lock, so those who wait for
 * it to finish loading wait only for its reads.
 */
void
ledger_lock_tables(void)
{
	Oid			nspid = get_namespace_oid("invoice_seq", false);

	LockRelationOid(invoice_seq_ledger_relid(), RowExclusiveLock);
	LockRelationOid(get_relname_relid("period_close", nspid), AccessShareLock);
}

/*
 * Take a number of the series' current period from the allocator.  The
 * allocator dates the number when it hands it out; if the period ended
 * while the caller waited (for a lock, say), the number is taken in the
 * next one.  Free numbers that can no longer be issued in date order are
 * voided on the way.  clock is invoice_seq.test_clock, or 0.
 */
static void
take_in_period(const InvoiceSeries *series, TimestampTz clock, char *period,
			   TakenNumber *taken)
{
	TimestampTz when = clock != 0 ? clock : GetCurrentTimestamp();
	bool		sweep_due = false;

	for (;;)
	{
		TimestampTz period_end;

		series_period(series, when, period, &period_end);
		if (!alloc_take(series, period, period_end, clock, taken))
		{
			/* a later period: its end is later still, so this ends */
			Assert(taken->at >= period_end);
			when = taken->at;
			continue;
		}
		sweep_due |= taken->sweep_due;
		if (!void_if_out_of_order(series, period, taken))
			break;
	}
	if (sweep_due)
		void_ended_periods(series, period, taken->at);
}

/*
 * Take a number of a series and record it in the current transaction, as
 * issued (next_invoice_no) or reserved (reserve_invoice_no).  The lowest
 * free number comes first, then the next one.  The caller is connected to
 * SPI as the owner, holds the series lock, and for a key, the key lock and
 * the knowledge that the key is new.
 */
void
ledger_take_number(const InvoiceSeries *series, const char *key,
				   EntryStatus status, const char *role, TimestampTz clock,
				   const bytea *app_digest, ReservedNumber *result)
{
	TakenNumber taken;
	NewEntry	e;

	take_in_period(series, clock, result->period, &taken);

	result->invoice_no = taken.invoice_no;
	preset_check_number(series, taken.invoice_no);
	series_render(series, taken.invoice_no, taken.at, result->display_no);
	result->status = status;
	result->reserved_at = taken.at;

	memset(&e, 0, sizeof(e));
	e.series = series;
	e.period = result->period;
	e.invoice_no = result->invoice_no;
	e.display_no = result->display_no;
	e.status = status;
	e.key = key;
	e.role = role;
	e.now = taken.at;
	e.app_digest = app_digest;
	ledger_insert(&e);
}

/*
 * The period argument of confirm and void: optional (and empty) for a series
 * that never resets, required and well formed for one that does.
 */
char *
resolve_period(const InvoiceSeries *series, text *period_arg)
{
	char	   *period = period_arg ? text_to_cstring(period_arg) : NULL;
	bool		ok;

	if (period != NULL && strlen(period) > ISEQ_MAX_PERIOD)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid period for invoice series \"%s\": it has %zu bytes",
						series->name, strlen(period)),
				 errdetail("A period has at most %d bytes.", ISEQ_MAX_PERIOD)));

	if (series->reset == SERIES_RESET_NEVER)
	{
		if (period != NULL && period[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid period \"%s\" for invoice series \"%s\"",
							period, series->name),
					 errdetail("The series never resets, so its period is empty.")));
		return "";
	}

	if (period == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("period is required for invoice series \"%s\", which resets %s",
						series->name, series_reset_name(series->reset)),
				 errhint("Pass the period that reserve_invoice returned.")));

	if (series->reset == SERIES_RESET_YEARLY)
		ok = strlen(period) == 4 && strspn(period, "0123456789") == 4;
	else
		ok = strlen(period) == 7 && strspn(period, "0123456789") == 4 &&
			period[4] == '-' && strspn(period + 5, "0123456789") == 2 &&
			atoi(period + 5) >= 1 && atoi(period + 5) <= 12;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid period \"%s\" for invoice series \"%s\"",
						period, series->name),
				 errdetail("The series resets %s, so its periods look like '%s'.",
						   series_reset_name(series->reset),
						   series->reset == SERIES_RESET_YEARLY ? "2026" : "2026-11")));
	return period;
}


typedef enum Transition
{
	TRANSITION_CONFIRM,			/* reserved -> issued */
	TRANSITION_VOID				/* reserved -> voided */
} Transition;

/* The arguments of confirm and void, checked. */
typedef struct TransitionArgs
{
	Transition	kind;
	char	   *name;
	int64		invoice_no;
	char	   *text;			/* external_ref (may be NULL), or reason */
	bytea	   *app_digest;		/* confirm: the application's digest, or NULL */
} TransitionArgs;

/* The ledger entry that a confirm or void has locked. */
typedef struct LockedEntry
{
	ItemPointerData tid;
	HeapTuple	row;			/* its current version */
	EntryStatus status;
	char	   *external_ref;
	bool		one_step;
	bytea	   *app_digest;
} LockedEntry;

/* An application digest is a SHA-256: 32 bytes. */
void
check_app_digest(const bytea *digest)
{
	if (digest != NULL && VARSIZE_ANY_EXHDR(digest) != ISEQ_APP_DIGEST_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid app_digest: it has %zu bytes",
						(size_t) VARSIZE_ANY_EXHDR(digest)),
				 errdetail("An application digest is a SHA-256 digest of %d bytes.",
						   ISEQ_APP_DIGEST_LEN)));
}

static bool
same_digest(const bytea *a, const bytea *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

static const char *
transition_verb(Transition kind)
{
	return kind == TRANSITION_CONFIRM ? "confirm" : "void";
}

/* Read and check the arguments of confirm and void. */
static void
transition_args(FunctionCallInfo fcinfo, Transition kind, TransitionArgs *a)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("series must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("invoice_no must not be NULL")));
	a->kind = kind;
	a->app_digest = NULL;
	a->name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	a->invoice_no = PG_GETARG_INT64(1);
	a->text = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	series_check_name(a->name);

	if (a->invoice_no < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid invoice number " INT64_FORMAT " for invoice series \"%s\"",
						a->invoice_no, a->name),
				 errdetail("Invoice numbers are positive.")));

	if (kind == TRANSITION_CONFIRM)
	{
		a->app_digest = (PG_NARGS() > 4 && !PG_ARGISNULL(4)) ?
			PG_GETARG_BYTEA_PP(4) : NULL;
		check_app_digest(a->app_digest);
		if (a->text != NULL &&
			(a->text[0] == '\0' || strlen(a->text) > ISEQ_MAX_EXTERNAL_REF))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid external_ref for invoice number " INT64_FORMAT " of series \"%s\"",
							a->invoice_no, a->name),
					 errdetail("An external reference has 1 to %d bytes.",
							   ISEQ_MAX_EXTERNAL_REF)));
		return;
	}

	if (a->text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("reason must not be NULL"),
				 errdetail("Voiding invoice number " INT64_FORMAT " of series \"%s\" needs a reason.",
						   a->invoice_no, a->name)));
	if (a->text[strspn(a->text, " \t\r\n")] == '\0' ||
		strlen(a->text) > ISEQ_MAX_REASON)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid reason for voiding invoice number " INT64_FORMAT " of series \"%s\"",
						a->invoice_no, a->name),
				 errdetail("A reason is not blank and has at most %d bytes.",
						   ISEQ_MAX_REASON)));
}

/* Read what confirm and void need of the entry that the slot holds. */
static void
read_locked_entry(TupleTableSlot *slot, LockedEntry *locked)
{
	slot_getallattrs(slot);
	locked->tid = slot->tts_tid;
	locked->row = ExecCopySlotHeapTuple(slot);
	locked->status =
		parse_entry_status(TextDatumGetCString(slot->tts_values[ENTRY_ATT_STATUS - 1]));
	locked->external_ref = slot->tts_isnull[ENTRY_ATT_EXTERNAL_REF - 1] ? NULL :
		TextDatumGetCString(slot->tts_values[ENTRY_ATT_EXTERNAL_REF - 1]);
	locked->one_step = !slot->tts_isnull[ENTRY_ATT_HOLDER_XID - 1];
	locked->app_digest = slot->tts_isnull[ENTRY_ATT_APP_DIGEST - 1] ? NULL :
		DatumGetByteaPCopy(slot->tts_values[ENTRY_ATT_APP_DIGEST - 1]);
}

/*
 * Lock the ledger entry in the caller's transaction, so that a concurrent
 * confirm and void of one number serialise on it.  The entry is found
 * without predicate locks and locked by its tuple id, as SELECT ... FOR
 * UPDATE would lock it (ledger_write_lock).  An entry changed meanwhile
 * is looked up again; in REPEATABLE READ and SERIALIZABLE, an entry
 * changed by a transaction that we waited for, or that committed since we
 * found it, is a serialization failure, as a row lock would be.  Returns
 * false if the number was never handed out.
 */
static bool
lock_entry(const InvoiceSeries *series, const char *period, int64 invoice_no,
		   const char *label, LockedEntry *locked)
{
	ScanKeyData keys[3];
	bool		changed = false;
	Relation	rel;
	TupleTableSlot *slot;
	TM_Result	result;

	period_keys(keys, series->id, period);
	ScanKeyInit(&keys[2], ENTRY_ATT_INVOICE_NO, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(invoice_no));
	rel = table_open(invoice_seq_ledger_relid(), RowExclusiveLock);
	slot = table_slot_create(rel, NULL);
	do
	{
		bool		changed_now;
		TransactionId busy;

		if (!find_row("ledger_entry_pkey", keys, 3, FIND_TO_LOCK, &locked->tid,
					  &changed_now, &busy))
		{
			ExecDropSingleTupleTableSlot(slot);
			table_close(rel, NoLock);
			return false;
		}
		changed |= changed_now;
		result = ledger_write_lock(rel, &locked->tid, slot);
		/* changed since we found it, by a transaction that committed since */
		if (result == TM_Updated || result == TM_Deleted)
			changed = true;
		else if (result != TM_Ok)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("invoice_seq: locking %s failed (result %d)",
							label, (int) result)));
	} while (result != TM_Ok && !(changed && IsolationUsesXactSnapshot()));
	if (changed && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access to %s", label),
				 errdetail("A concurrent transaction changed it.")));
	read_locked_entry(slot, locked);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	return true;
}

/*
 * Refuse what the entry's state forbids.  Returns false if there is nothing
 * to do: a confirm repeated with the same external_ref is a harmless retry.
 */
static bool
check_transition(const TransitionArgs *a, const LockedEntry *locked,
				 const char *label)
{
	const char *verb = transition_verb(a->kind);
	bool		issued = (locked->status == ENTRY_ISSUED);

	if (locked->status == ENTRY_VOIDED)
		ereport(ERROR,
				(errcode(ERRCODE_ISEQ_NUMBER_VOIDED),
				 errmsg("cannot %s %s: it is voided", verb, label),
				 errdetail("A voided number stays voided.")));

	/* A one-step number was issued by the transaction that took it. */
	if (locked->one_step)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s %s: it was taken with next_invoice_no()",
						verb, label),
				 errdetail("It was issued when the transaction that took it committed."),
				 (a->kind == TRANSITION_VOID && issued) ?
				 errhint("An issued invoice is cancelled with a credit note.") : 0));

	if (!issued)
		return true;

	if (a->kind == TRANSITION_VOID)
		ereport(ERROR,
				(errcode(ERRCODE_ISEQ_NUMBER_ISSUED),
				 errmsg("cannot void %s: it is issued", label),
				 errhint("An issued invoice is cancelled with a credit note.")));

	if (!same_digest(a->app_digest, locked->app_digest))
		ereport(ERROR,
				(errcode(ERRCODE_ISEQ_NUMBER_ISSUED),
				 errmsg("%s is already issued with a different app_digest", label)));
	if ((a->text == NULL && locked->external_ref == NULL) ||
		(a->text != NULL && locked->external_ref != NULL &&
		 strcmp(a->text, locked->external_ref) == 0))
		return false;
	ereport(ERROR,
			(errcode(ERRCODE_ISEQ_NUMBER_ISSUED),
			 errmsg("%s is already issued with a different external_ref", label),
			 locked->external_ref ?
			 errdetail("It was confirmed with external_ref \"%s\".", locked->external_ref) :
			 errdetail("It was confirmed without an external_ref.")));
	return false;				/* keep compiler quiet */
}

/* Write the transition on the locked entry. */
static void
apply_transition(const TransitionArgs *a, const InvoiceSeries *series,
				 const char *period, const LockedEntry *locked,
				 const char *caller, TimestampTz now)
{
	Relation	rel = table_open(invoice_seq_ledger_relid(), RowExclusiveLock);
	Datum		values[ENTRY_NATTS];
	bool		isnull[ENTRY_NATTS];
	bool		confirm = (a->kind == TRANSITION_CONFIRM);
	int			when = confirm ? ENTRY_ATT_CONFIRMED_AT : ENTRY_ATT_VOIDED_AT;
	int			who = confirm ? ENTRY_ATT_CONFIRMED_BY : ENTRY_ATT_VOIDED_BY;
	int			text = confirm ? ENTRY_ATT_EXTERNAL_REF : ENTRY_ATT_VOID_REASON;

	heap_deform_tuple(locked->row, RelationGetDescr(rel), values, isnull);
	values[ENTRY_ATT_STATUS - 1] =
		CStringGetTextDatum(entry_status_name(confirm ? ENTRY_ISSUED : ENTRY_VOIDED));
	values[when - 1] = TimestampTzGetDatum(now);
	isnull[when - 1] = false;
	values[who - 1] = CStringGetTextDatum(caller);
	isnull[who - 1] = false;
	isnull[text - 1] = (a->text == NULL);
	if (a->text != NULL)
		values[text - 1] = CStringGetTextDatum(a->text);
	if (confirm)
	{
		isnull[ENTRY_ATT_APP_DIGEST - 1] = (a->app_digest == NULL);
		values[ENTRY_ATT_APP_DIGEST - 1] = PointerGetDatum(a->app_digest);
	}

	/* the invoice_ledger access method allows this one update */
	ledger_am_permit_update(series->id, period, a->invoice_no);
	PG_TRY();
	{
		ledger_write_update(rel, (ItemPointer) &locked->tid, values, isnull);
	}
	PG_FINALLY();
	{
		ledger_am_end_update();
	}
	PG_END_TRY();
	table_close(rel, NoLock);
	seal_due_note(series->id, period);
}

/*
 * Common part of confirm and void: validate, lock the ledger entry in the
 * caller's transaction and apply the transition.  Returns the number.
 */
static int64
ledger_transition(FunctionCallInfo fcinfo, Transition kind)
{
	TransitionArgs a;
	InvoiceSeries series;
	LockedEntry locked;
	char	   *caller;
	char	   *period;
	char	   *label;
	TimestampTz now;
	Oid			save_userid;
	int			save_sec_context;

	transition_args(fcinfo, kind, &a);
	caller = GetUserNameFromId(GetUserId(), false);

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);

	if (!series_lookup(a.name, &series))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invoice series \"%s\" does not exist", a.name)));
	series_check_member(&series, save_userid);
	period = resolve_period(&series, PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));
	label = number_label(series.name, period, a.invoice_no);

	if (!lock_entry(&series, period, a.invoice_no, label, &locked))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s has not been handed out", label),
				 errhint("Only a number returned by reserve_invoice_no can be %s.",
						 kind == TRANSITION_CONFIRM ? "confirmed" : "voided")));

	/* the time of the transition: after any wait for the entry's row */
	now = invoice_seq_now();

	/* a closed period's record is final; refuse even harmless retries */
	if (invoice_seq_period_closed(series.id, period))
		ereport(ERROR,
				(errcode(ERRCODE_ISEQ_PERIOD_CLOSED),
				 errmsg("cannot %s %s: its period is closed", transition_verb(kind), label)));
	if (check_transition(&a, &locked, label))
	{
		char	   *conflict = NULL;

		if (kind == TRANSITION_CONFIRM && series.chronological)
			conflict = chronology_conflict(&series, period, a.invoice_no, now);
		if (conflict != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_ISEQ_OUT_OF_ORDER),
					 errmsg("cannot confirm %s now: the series is chronological", label),
					 errdetail_internal("%s", conflict),
					 errhint("Void the number with invoice_seq.void_invoice_no(), and issue the invoice under a new number.")));
		apply_transition(&a, &series, period, &locked, caller, now);
	}

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
	return a.invoice_no;
}

/*
 * invoice_seq.confirm_invoice_no(series, invoice_no, external_ref, period)
 *		RETURNS bigint: the number, so that the confirm and the application's
 *		own row fit in one statement.
 */
Datum
invoice_seq_confirm_invoice_no(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(ledger_transition(fcinfo, TRANSITION_CONFIRM));
}

/* invoice_seq.void_invoice_no(series, invoice_no, reason, period) */
Datum
invoice_seq_void_invoice_no(PG_FUNCTION_ARGS)
{
	(void) ledger_transition(fcinfo, TRANSITION_VOID);
	PG_RETURN_VOID();
}
