/*-------------------------------------------------------------------------
 *
 * ledger.c
 *		The ledger: allocation of a number (run by the sequencer) and the
 *		transitions reserved -> issued and reserved -> voided (run in the
 *		caller's transaction).
 *
 * Every number handed out has exactly one row in invoice_seq.ledger_entry,
 * keyed by (series_id, period, invoice_no).  The sequencer is the only
 * process that inserts rows, and it does so under the series lock, so the
 * next number is simply the highest one in the ledger plus one: there is no
 * separate counter that could drift from the ledger, and a crash can only
 * lose rows that were never committed and never answered.
 *
 * A number taken with next_invoice_no() is recorded with its holder, the
 * caller's top-level transaction id, and the caller's own transaction marks
 * it issued.  Once the holder is over, a row that is still 'reserved' was
 * not issued (rollback, error, killed backend, crash): the sequencer hands
 * it out again, lowest first, before any fresh number.  Whether a holder is
 * over is judged with the same snapshot that read the row, so a holder that
 * committed just before is always seen as having issued its number.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "invoice_seq.h"

PG_FUNCTION_INFO_V1(invoice_seq_confirm_invoice_no);
PG_FUNCTION_INFO_V1(invoice_seq_void_invoice_no);

static SPIPlanPtr key_plan = NULL;
static SPIPlanPtr last_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr held_plan = NULL;
static SPIPlanPtr recycle_plan = NULL;
static SPIPlanPtr auto_void_plan = NULL;
static SPIPlanPtr above_plan = NULL;
static SPIPlanPtr below_plan = NULL;
static SPIPlanPtr issue_held_plan = NULL;
static SPIPlanPtr lock_entry_plan = NULL;
static SPIPlanPtr confirm_plan = NULL;
static SPIPlanPtr void_plan = NULL;

/*
 * The numbers of one (series, period) that the sequencer may hand out
 * again, lowest first.  Found once per batch and series, when the first
 * request of the batch for that series needs them.
 */
typedef struct Recyclable
{
	int32		series_id;
	char		period[ISEQ_MAX_PERIOD + 1];
	int			count;
	int			next;			/* numbers[next] is the next candidate */
	int64	   *numbers;
} Recyclable;

static MemoryContext batch_context = NULL;
static List *batch_recyclable = NIL;

/*
 * Series in which the last search found nothing to hand out again, with
 * the recycle epoch (see SequencerShared) as of that search.  Until the
 * epoch moves, no one-step number of such a series can have become
 * recyclable, and the search is skipped.  Kept for the sequencer's life.
 */
typedef struct CleanSeries
{
	int32		series_id;		/* hash key */
	uint64		epoch;
} CleanSeries;

static HTAB *clean_series = NULL;

/* Who voids a number that can no longer be issued: the extension itself. */
#define AUTO_VOIDED_BY "invoice_seq"

/* Parameters of the statements on one entry: the key, then the change. */
static Oid	entry_argtypes[6] = {INT4OID, TEXTOID, INT8OID, TIMESTAMPTZOID,
TEXTOID, TEXTOID};

/* "invoice number 7 of series "INV"", with the period if there is one. */
static char *
number_label(const char *series, const char *period, int64 invoice_no)
{
	if (period[0] == '\0')
		return psprintf("invoice number " INT64_FORMAT " of series \"%s\"",
						invoice_no, series);
	return psprintf("invoice number " INT64_FORMAT " of series \"%s\" in period %s",
					invoice_no, series, period);
}

/*
 * Run one of our UPDATE statements on the ledger entry (series_id, period,
 * invoice_no).  The invoice_ledger access method refuses every other update
 * of the ledger, so the entry is named to it for the statement's duration.
 */
static int
execute_entry_update(SPIPlanPtr plan, Datum *values, const char *nulls,
					 int32 series_id, const char *period, int64 invoice_no)
{
	volatile int rc = 0;

	ledger_am_permit_update(series_id, period, invoice_no);
	PG_TRY();
	{
		rc = invoice_seq_execute(plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		ledger_am_end_update();
	}
	PG_END_TRY();
	return rc;
}

/* yyyymmdd as 'yyyy-mm-dd'. */
static char *
day_text(int day)
{
	return psprintf("%04d-%02d-%02d", day / 10000, day / 100 % 100, day % 100);
}

/* The nearest number above or below $3 that is or will be issued. */
#define NEIGHBOUR_SQL(comparison, order) \
	"SELECT invoice_no," \
	"       CASE WHEN status OPERATOR(pg_catalog.=) 'issued'" \
	"            THEN confirmed_at ELSE reserved_at END" \
	" FROM invoice_seq.ledger_entry" \
	" WHERE series_id OPERATOR(pg_catalog.=) $1" \
	" AND period OPERATOR(pg_catalog.=) $2" \
	" AND invoice_no " comparison " $3" \
	" AND (status OPERATOR(pg_catalog.=) 'issued'" \
	"      OR (status OPERATOR(pg_catalog.=) 'reserved'" \
	"          AND holder_xid IS NOT NULL" \
	"          AND pg_catalog.pg_xact_status(holder_xid)" \
	"              OPERATOR(pg_catalog.=) 'in progress'))" \
	" ORDER BY invoice_no " order " LIMIT 1"

/*
 * Would issuing invoice_no of (series, period) at "when" break the
 * chronological rule: a higher number never carries an earlier day than a
 * lower one?  The neighbours that count are the issued numbers and the
 * one-step numbers whose transaction is still open (they will be issued at
 * their reservation time, if at all).  With the rule holding for the rest
 * of the period, the nearest such neighbour on each side is enough.
 *
 * Returns NULL if there is no conflict, else a sentence that names the
 * conflicting number.  The caller is connected to SPI as the owner.
 */
static char *
chronology_conflict(const InvoiceSeries *series, const char *period,
					int64 invoice_no, TimestampTz when)
{
	Oid			argtypes[3] = {INT4OID, TEXTOID, INT8OID};
	Datum		values[3];
	int			day = series_day(series, when);
	int			side;

	values[0] = Int32GetDatum(series->id);
	values[1] = CStringGetTextDatum(period);
	values[2] = Int64GetDatum(invoice_no);

	for (side = 0; side < 2; side++)
	{
		bool		above = (side == 0);
		SPIPlanPtr	plan;
		int			rc;
		bool		isnull;
		int64		other;
		int			other_day;

		if (above)
			plan = invoice_seq_plan(&above_plan,
									NEIGHBOUR_SQL("OPERATOR(pg_catalog.>)", "ASC"),
									3, argtypes);
		else
			plan = invoice_seq_plan(&below_plan,
									NEIGHBOUR_SQL("OPERATOR(pg_catalog.<)", "DESC"),
									3, argtypes);
		rc = invoice_seq_execute(plan, values, NULL, true, 1);
		invoice_seq_spi_check(rc, SPI_OK_SELECT, "checking chronological order");
		if (SPI_processed == 0)
			continue;

		other = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
		other_day = series_day(series,
							   DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
																 SPI_tuptable->tupdesc,
																 2, &isnull)));
		if (above ? other_day < day : other_day > day)
			return psprintf("Number " INT64_FORMAT " is dated %s, and number " INT64_FORMAT " would be dated %s.",
							other, day_text(other_day), invoice_no, day_text(day));
	}
	return NULL;
}

/*
 * Has the holder of a one-step number finished, as of the snapshot that
 * read the number's row?
 */
static bool
holder_finished(FullTransactionId holder, Snapshot snapshot)
{
	FullTransactionId next = ReadNextFullTransactionId();

	/*
	 * A holder at or past the next id cannot be running.  Nor can one so old
	 * that 32-bit comparisons with the snapshot would wrap around.
	 */
	if (!FullTransactionIdPrecedes(holder, next) ||
		U64FromFullTransactionId(next) - U64FromFullTransactionId(holder) >
		(uint64) (MaxTransactionId >> 1))
		return true;
	return !XidInMVCCSnapshot(XidFromFullTransactionId(holder), snapshot);
}

/* Void a one-step number that was not issued and never can be. */
static void
auto_void(const InvoiceSeries *series, const char *period, int64 invoice_no,
		  TimestampTz now, const char *reason)
{
	Oid			argtypes[6] = {INT4OID, TEXTOID, INT8OID, TIMESTAMPTZOID,
	TEXTOID, TEXTOID};
	Datum		values[6];
	SPIPlanPtr	plan;
	int			rc;

	plan = invoice_seq_plan(&auto_void_plan,
							"UPDATE invoice_seq.ledger_entry"
							" SET status = 'voided', voided_at = $4,"
							"     voided_by = $5, void_reason = $6"
							" WHERE series_id OPERATOR(pg_catalog.=) $1"
							" AND period OPERATOR(pg_catalog.=) $2"
							" AND invoice_no OPERATOR(pg_catalog.=) $3"
							" AND status OPERATOR(pg_catalog.=) 'reserved'"
							" AND holder_xid IS NOT NULL",
							6, argtypes);
	values[0] = Int32GetDatum(series->id);
	values[1] = CStringGetTextDatum(period);
	values[2] = Int64GetDatum(invoice_no);
	values[3] = TimestampTzGetDatum(now);
	values[4] = CStringGetTextDatum(AUTO_VOIDED_BY);
	values[5] = CStringGetTextDatum(reason);
	rc = execute_entry_update(plan, values, NULL, series->id, period, invoice_no);
	invoice_seq_spi_check(rc, SPI_OK_UPDATE, "voiding a number that cannot be issued");
}

/* Start a new batch: forget what the last one found. */
void
ledger_begin_batch(MemoryContext context)
{
	batch_context = context;
	batch_recyclable = NIL;
}

/*
 * The recyclable numbers of (series, period), found on first use in the
 * batch.  One-step numbers of earlier periods that were not issued can no
 * longer be: they are voided here, on the way.
 */
static Recyclable *
find_recyclable(const InvoiceSeries *series, const char *period,
				TimestampTz now)
{
	ListCell   *lc;
	Recyclable *rec;
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(series->id);
	SPIPlanPtr	plan;
	Snapshot	snapshot;
	MemoryContext oldcontext;
	uint64		i;
	int			rc;
	uint64		epoch;
	CleanSeries *clean;
	bool		found_any = false;

	foreach(lc, batch_recyclable)
	{
		rec = (Recyclable *) lfirst(lc);
		if (rec->series_id == series->id && strcmp(rec->period, period) == 0)
			return rec;
	}

	oldcontext = MemoryContextSwitchTo(batch_context);
	rec = palloc0(sizeof(Recyclable));
	rec->series_id = series->id;
	strlcpy(rec->period, period, sizeof(rec->period));
	batch_recyclable = lappend(batch_recyclable, rec);
	MemoryContextSwitchTo(oldcontext);

	if (clean_series == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(CleanSeries);
		clean_series = hash_create("invoice_seq clean series", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS);
	}

	/* read before the snapshot: a later change moves it past what we store */
	epoch = pg_atomic_read_u64(&sequencer_shared->recycle_epoch);
	clean = hash_search(clean_series, &series->id, HASH_FIND, NULL);
	if (clean != NULL && clean->epoch == epoch)
		return rec;

	plan = invoice_seq_plan(&held_plan,
							"SELECT period, invoice_no, holder_xid"
							" FROM invoice_seq.ledger_entry"
							" WHERE series_id OPERATOR(pg_catalog.=) $1"
							" AND status OPERATOR(pg_catalog.=) 'reserved'"
							" AND holder_xid IS NOT NULL"
							" ORDER BY period, invoice_no",
							1, &argtype);

	/* the rows, and whether their holders are over, as of one snapshot */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	rc = SPI_execute_snapshot(plan, &arg, NULL, snapshot, InvalidSnapshot,
							  true, false, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "finding numbers to hand out again");

	rec->numbers = MemoryContextAlloc(batch_context,
									  sizeof(int64) * Max(SPI_processed, 1));

	{
		SPITupleTable *tuptable = SPI_tuptable;
		uint64		nrows = SPI_processed;

		for (i = 0; i < nrows; i++)
		{
			HeapTuple	tuple = tuptable->vals[i];
			char	   *row_period = SPI_getvalue(tuple, tuptable->tupdesc, 1);
			bool		isnull;
			int64		invoice_no = DatumGetInt64(SPI_getbinval(tuple, tuptable->tupdesc, 2, &isnull));
			FullTransactionId holder = DatumGetFullTransactionId(SPI_getbinval(tuple, tuptable->tupdesc, 3, &isnull));
			int			cmp = strcmp(row_period, period);

			if (!holder_finished(holder, snapshot))
				continue;
			if (cmp < 0)
				auto_void(series, row_period, invoice_no, now,
						  "not issued: the transaction that took it with next_invoice_no() did not commit, and its period has ended");
			else
			{
				found_any = true;
				if (cmp == 0)
					rec->numbers[rec->count++] = invoice_no;
			}
		}
		SPI_freetuptable(tuptable);
	}
	UnregisterSnapshot(snapshot);

	/*
	 * What is found now may be handed out in this batch, or not (the batch
	 * may fail): only a search that found nothing makes the series clean.
	 */
	if (found_any)
		(void) hash_search(clean_series, &series->id, HASH_REMOVE, NULL);
	else
	{
		clean = hash_search(clean_series, &series->id, HASH_ENTER, NULL);
		clean->epoch = epoch;
	}

	return rec;
}

/*
 * Hand out a recyclable number again, to holder (invalid for a two-phase
 * reservation, which may carry an idempotency key instead).
 */
static bool
recycle(const InvoiceSeries *series, const char *period, int64 invoice_no,
		const char *key, FullTransactionId holder, const char *role,
		TimestampTz now, ReservedNumber *result)
{
	Oid			argtypes[8] = {INT4OID, TEXTOID, INT8OID, TEXTOID,
	XID8OID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	SPIPlanPtr	plan;
	int			rc;

	strlcpy(result->period, period, sizeof(result->period));
	result->invoice_no = invoice_no;
	series_render(series, invoice_no, now, result->display_no);
	strlcpy(result->status, "reserved", sizeof(result->status));
	result->reserved_at = now;

	plan = invoice_seq_plan(&recycle_plan,
							"UPDATE invoice_seq.ledger_entry"
							" SET display_no = $4, holder_xid = $5,"
							"     idempotency_key = $6, reserved_at = $7,"
							"     reserved_by = $8"
							" WHERE series_id OPERATOR(pg_catalog.=) $1"
							" AND period OPERATOR(pg_catalog.=) $2"
							" AND invoice_no OPERATOR(pg_catalog.=) $3"
							" AND status OPERATOR(pg_catalog.=) 'reserved'"
							" AND holder_xid IS NOT NULL",
							8, argtypes);
	values[0] = Int32GetDatum(series->id);
	values[1] = CStringGetTextDatum(period);
	values[2] = Int64GetDatum(invoice_no);
	values[3] = CStringGetTextDatum(result->display_no);
	if (FullTransactionIdIsValid(holder))
		values[4] = FullTransactionIdGetDatum(holder);
	else
		nulls[4] = 'n';
	if (key != NULL)
		values[5] = CStringGetTextDatum(key);
	else
		nulls[5] = 'n';
	values[6] = TimestampTzGetDatum(now);
	values[7] = CStringGetTextDatum(role);
	rc = execute_entry_update(plan, values, nulls, series->id, period, invoice_no);
	invoice_seq_spi_check(rc, SPI_OK_UPDATE, "handing out a number again");

	return SPI_processed == 1;
}

/*
 * Allocate a number of a series, or find the one already reserved under the
 * idempotency key.  A number that a one-step caller took and did not issue
 * comes first, lowest first; then max + 1.  holder is the caller's
 * transaction for next_invoice_no(), invalid for reserve_invoice_no().
 * Runs in the sequencer, inside a subtransaction of the batch, connected to
 * SPI, holding the series lock.
 */
void
ledger_reserve(const InvoiceSeries *series, const char *key,
			   FullTransactionId holder, const char *role,
			   TimestampTz now, ReservedNumber *result)
{
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		invoice_no;
	Recyclable *rec;
	int			rc;

	if (key != NULL)
	{
		Oid			argtypes[2] = {INT4OID, TEXTOID};
		SPIPlanPtr	plan = invoice_seq_plan(&key_plan,
											"SELECT period, invoice_no, display_no, status, reserved_at"
											" FROM invoice_seq.ledger_entry"
											" WHERE series_id OPERATOR(pg_catalog.=) $1"
											" AND idempotency_key OPERATOR(pg_catalog.=) $2",
											2, argtypes);

		values[0] = Int32GetDatum(series->id);
		values[1] = CStringGetTextDatum(key);
		rc = invoice_seq_execute(plan, values, NULL, false, 1);
		invoice_seq_spi_check(rc, SPI_OK_SELECT, "idempotency key lookup");

		if (SPI_processed > 0)
		{
			HeapTuple	tuple = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;

			strlcpy(result->period, SPI_getvalue(tuple, desc, 1),
					sizeof(result->period));
			result->invoice_no = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
			strlcpy(result->display_no, SPI_getvalue(tuple, desc, 3),
					sizeof(result->display_no));
			strlcpy(result->status, SPI_getvalue(tuple, desc, 4),
					sizeof(result->status));
			result->reserved_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 5, &isnull));

			if (strcmp(result->status, "voided") == 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("idempotency key \"%s\" belongs to voided %s",
								key, number_label(series->name, result->period,
												  result->invoice_no)),
						 errdetail("A voided number is never handed out again."),
						 errhint("Use a new idempotency key for a new attempt.")));
			return;
		}
	}

	series_period(series, now, result->period);

	/* First a number that a one-step caller took and did not issue. */
	rec = find_recyclable(series, result->period, now);
	while (rec->next < rec->count)
	{
		int64		candidate = rec->numbers[rec->next++];
		char	   *conflict = NULL;

		if (series->chronological)
			conflict = chronology_conflict(series, result->period, candidate, now);
		if (conflict != NULL)
		{
			auto_void(series, result->period, candidate, now,
					  psprintf("not issued: the transaction that took it with next_invoice_no() did not commit, and issuing it now would break chronological order. %s",
							   conflict));
			continue;
		}
		if (recycle(series, result->period, candidate, key, holder, role,
					now, result))
			return;
	}

	{
		Oid			argtypes[2] = {INT4OID, TEXTOID};
		SPIPlanPtr	plan = invoice_seq_plan(&last_plan,
											"SELECT invoice_no FROM invoice_seq.ledger_entry"
											" WHERE series_id OPERATOR(pg_catalog.=) $1"
											" AND period OPERATOR(pg_catalog.=) $2"
											" ORDER BY invoice_no DESC LIMIT 1",
											2, argtypes);

		values[0] = Int32GetDatum(series->id);
		values[1] = CStringGetTextDatum(result->period);
		rc = invoice_seq_execute(plan, values, NULL, false, 1);
		invoice_seq_spi_check(rc, SPI_OK_SELECT, "finding the last number");
	}

	if (SPI_processed == 0)
		invoice_no = series->start_at;
	else
	{
		int64		last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc,
													   1, &isnull));

		if (last == PG_INT64_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
					 errmsg("invoice series \"%s\" has reached the largest invoice number, " INT64_FORMAT,
							series->name, last),
					 errhint("Create a new series.")));
		invoice_no = last + 1;
	}

	result->invoice_no = invoice_no;
	series_render(series, invoice_no, now, result->display_no);
	strlcpy(result->status, "reserved", sizeof(result->status));
	result->reserved_at = now;

	{
		Oid			argtypes[8] = {INT4OID, TEXTOID, INT8OID, TEXTOID,
		TIMESTAMPTZOID, TEXTOID, TEXTOID, XID8OID};
		SPIPlanPtr	plan = invoice_seq_plan(&insert_plan,
											"INSERT INTO invoice_seq.ledger_entry"
											" (series_id, period, invoice_no, display_no, status,"
											"  reserved_at, reserved_by, idempotency_key, holder_xid)"
											" VALUES ($1, $2, $3, $4, 'reserved', $5, $6, $7, $8)",
											8, argtypes);

		values[0] = Int32GetDatum(series->id);
		values[1] = CStringGetTextDatum(result->period);
		values[2] = Int64GetDatum(invoice_no);
		values[3] = CStringGetTextDatum(result->display_no);
		values[4] = TimestampTzGetDatum(now);
		values[5] = CStringGetTextDatum(role);
		if (key != NULL)
			values[6] = CStringGetTextDatum(key);
		else
			nulls[6] = 'n';
		if (FullTransactionIdIsValid(holder))
			values[7] = FullTransactionIdGetDatum(holder);
		else
			nulls[7] = 'n';
		rc = invoice_seq_execute(plan, values, nulls, false, 0);
		invoice_seq_spi_check(rc, SPI_OK_INSERT, "recording the reservation");
	}
}

/*
 * Issue a number that next_invoice_no() just received, in the caller's
 * transaction: it counts as issued exactly if that transaction commits.  Its
 * date is the time the sequencer handed it out, the time the chronological
 * checks assumed.  The caller is connected to SPI as the owner.
 */
void
ledger_issue_held(const InvoiceSeries *series, FullTransactionId holder,
				  const char *role, const ReservedNumber *number)
{
	Oid			argtypes[6] = {INT4OID, TEXTOID, INT8OID, TIMESTAMPTZOID,
	TEXTOID, XID8OID};
	Datum		values[6];
	SPIPlanPtr	plan;
	int			rc;

	plan = invoice_seq_plan(&issue_held_plan,
							"UPDATE invoice_seq.ledger_entry"
							" SET status = 'issued', confirmed_at = $4,"
							"     confirmed_by = $5"
							" WHERE series_id OPERATOR(pg_catalog.=) $1"
							" AND period OPERATOR(pg_catalog.=) $2"
							" AND invoice_no OPERATOR(pg_catalog.=) $3"
							" AND status OPERATOR(pg_catalog.=) 'reserved'"
							" AND holder_xid OPERATOR(pg_catalog.=) $6",
							6, argtypes);
	values[0] = Int32GetDatum(series->id);
	values[1] = CStringGetTextDatum(number->period);
	values[2] = Int64GetDatum(number->invoice_no);
	values[3] = TimestampTzGetDatum(number->reserved_at);
	values[4] = CStringGetTextDatum(role);
	values[5] = FullTransactionIdGetDatum(holder);
	rc = execute_entry_update(plan, values, NULL, series->id, number->period,
							  number->invoice_no);
	invoice_seq_spi_check(rc, SPI_OK_UPDATE, "issuing the number");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("invoice_seq: %s was not held by this transaction",
						number_label(series->name, number->period,
									 number->invoice_no))));
}

/*
 * The period argument of confirm and void: optional (and empty) for a series
 * that never resets, required and well formed for one that does.
 */
static char *
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

/*
 * Common part of confirm and void: validate, lock the ledger entry in the
 * caller's transaction and apply the transition.  "text" is the external
 * reference (confirm) or the reason (void).
 */
static void
ledger_transition(FunctionCallInfo fcinfo, bool confirm)
{
	char	   *name;
	int64		invoice_no;
	char	   *arg = NULL;
	char	   *caller;
	InvoiceSeries series;
	char	   *period;
	char	   *label;
	char	   *status;
	char	   *old_ref;
	bool		one_step;
	bool		isnull;
	TimestampTz now = invoice_seq_now();
	Oid			save_userid;
	int			save_sec_context;
	SPIPlanPtr	plan;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			rc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("series must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("invoice_no must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	invoice_no = PG_GETARG_INT64(1);
	series_check_name(name);

	if (invoice_no < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid invoice number " INT64_FORMAT " for invoice series \"%s\"",
						invoice_no, name),
				 errdetail("Invoice numbers are positive.")));

	if (!PG_ARGISNULL(2))
		arg = text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (confirm)
	{
		if (arg != NULL && (arg[0] == '\0' || strlen(arg) > ISEQ_MAX_EXTERNAL_REF))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid external_ref for invoice number " INT64_FORMAT " of series \"%s\"",
							invoice_no, name),
					 errdetail("An external reference has 1 to %d bytes.",
							   ISEQ_MAX_EXTERNAL_REF)));
	}
	else
	{
		if (arg == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("reason must not be NULL"),
					 errdetail("Voiding invoice number " INT64_FORMAT " of series \"%s\" needs a reason.",
							   invoice_no, name)));
		if (arg[strspn(arg, " \t\r\n")] == '\0' || strlen(arg) > ISEQ_MAX_REASON)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid reason for voiding invoice number " INT64_FORMAT " of series \"%s\"",
							invoice_no, name),
					 errdetail("A reason is not blank and has at most %d bytes.",
							   ISEQ_MAX_REASON)));
	}

	caller = GetUserNameFromId(GetUserId(), false);

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);

	if (!series_lookup(name, &series))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invoice series \"%s\" does not exist", name)));
	series_check_member(&series, save_userid);
	period = resolve_period(&series, PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));
	label = number_label(series.name, period, invoice_no);

	values[0] = Int32GetDatum(series.id);
	values[1] = CStringGetTextDatum(period);
	values[2] = Int64GetDatum(invoice_no);

	plan = invoice_seq_plan(&lock_entry_plan,
					   "SELECT status, external_ref, holder_xid IS NOT NULL"
					   " FROM invoice_seq.ledger_entry"
					   " WHERE series_id OPERATOR(pg_catalog.=) $1"
					   " AND period OPERATOR(pg_catalog.=) $2"
					   " AND invoice_no OPERATOR(pg_catalog.=) $3"
					   " FOR UPDATE",
					   3, entry_argtypes);
	rc = invoice_seq_execute(plan, values, NULL, false, 1);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "locking the ledger entry");

	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s has not been handed out", label),
				 errhint("Only a number returned by reserve_invoice_no can be %s.",
						 confirm ? "confirmed" : "voided")));

	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	old_ref = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	one_step = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 3, &isnull));

	if (strcmp(status, "voided") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s %s: it is voided", confirm ? "confirm" : "void", label),
				 errdetail("A voided number stays voided.")));

	/*
	 * A one-step number is issued by the transaction that took it, or handed
	 * out again; nobody else decides its fate.  (Voided, it is as final as
	 * any other void.)
	 */
	if (one_step)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s %s: it was taken with next_invoice_no()",
						confirm ? "confirm" : "void", label),
				 strcmp(status, "issued") == 0 ?
				 errdetail("It was issued when the transaction that took it committed.") :
				 errdetail("Such a number is issued when the transaction that took it commits, and handed out again if that transaction does not commit."),
				 (!confirm && strcmp(status, "issued") == 0) ?
				 errhint("An issued invoice is cancelled with a credit note.") : 0));

	if (strcmp(status, "issued") == 0)
	{
		if (!confirm)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot void %s: it is issued", label),
					 errhint("An issued invoice is cancelled with a credit note.")));

		/* Confirming again with the same reference is a harmless retry. */
		if ((arg == NULL && old_ref == NULL) ||
			(arg != NULL && old_ref != NULL && strcmp(arg, old_ref) == 0))
		{
			SetUserIdAndSecContext(save_userid, save_sec_context);
			SPI_finish();
			return;
		}
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is already issued with a different external_ref", label),
				 old_ref ? errdetail("It was confirmed with external_ref \"%s\".", old_ref) :
				 errdetail("It was confirmed without an external_ref.")));
	}

	if (confirm && series.chronological)
	{
		char	   *conflict = chronology_conflict(&series, period, invoice_no, now);

		if (conflict != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot confirm %s now: the series is chronological", label),
					 errdetail_internal("%s", conflict),
					 errhint("Void the number with invoice_seq.void_invoice_no(), and issue the invoice under a new number.")));
	}

	/* $4 = when, $5 = who, $6 = external_ref or void reason */
	values[3] = TimestampTzGetDatum(now);
	values[4] = CStringGetTextDatum(caller);
	if (arg != NULL)
		values[5] = CStringGetTextDatum(arg);
	else
		nulls[5] = 'n';

	if (confirm)
		plan = invoice_seq_plan(&confirm_plan,
						   "UPDATE invoice_seq.ledger_entry"
						   " SET status = 'issued', confirmed_at = $4,"
						   "     confirmed_by = $5, external_ref = $6"
						   " WHERE series_id OPERATOR(pg_catalog.=) $1"
						   " AND period OPERATOR(pg_catalog.=) $2"
						   " AND invoice_no OPERATOR(pg_catalog.=) $3",
						   6, entry_argtypes);
	else
		plan = invoice_seq_plan(&void_plan,
						   "UPDATE invoice_seq.ledger_entry"
						   " SET status = 'voided', voided_at = $4,"
						   "     voided_by = $5, void_reason = $6"
						   " WHERE series_id OPERATOR(pg_catalog.=) $1"
						   " AND period OPERATOR(pg_catalog.=) $2"
						   " AND invoice_no OPERATOR(pg_catalog.=) $3",
						   6, entry_argtypes);
	rc = execute_entry_update(plan, values, nulls, series.id, period, invoice_no);
	invoice_seq_spi_check(rc, SPI_OK_UPDATE, "updating the ledger entry");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("invoice_seq: updating %s changed " UINT64_FORMAT " rows",
						label, SPI_processed)));

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
}

/* invoice_seq.confirm_invoice_no(series, invoice_no, external_ref, period) */
Datum
invoice_seq_confirm_invoice_no(PG_FUNCTION_ARGS)
{
	ledger_transition(fcinfo, true);
	PG_RETURN_VOID();
}

/* invoice_seq.void_invoice_no(series, invoice_no, reason, period) */
Datum
invoice_seq_void_invoice_no(PG_FUNCTION_ARGS)
{
	ledger_transition(fcinfo, false);
	PG_RETURN_VOID();
}
