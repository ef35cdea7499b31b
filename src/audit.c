/*-------------------------------------------------------------------------
 *
 * audit.c
 *		check_series(), the health report of the ledger, and stats(), the
 *		counters of each database's sequencer.
 *
 * It covers the series the caller may use (a member of its owner role).
 * No rows means healthy.  A 'gap' row is a number between a period's
 * start_at and its highest number that has no ledger entry (see below); a
 * 'stale_reservation' row is a number reserved longer ago than the series'
 * stale_after and neither confirmed nor voided.  The system never voids a
 * stale reservation by itself: the integrator may have accepted the invoice
 * while the confirm was lost, so only a person (or the application's
 * reconciliation) can say whether to confirm or void it.
 *
 * A number without a ledger row below the highest one of its period is a
 * gap only if the allocator does not know it as free (handed to a
 * transaction that did not commit: the next caller gets it), and no
 * transaction holding a number of that period is still running (it may
 * hold this one).  A 'chronology' row is an issued number of a
 * chronological series dated earlier than a lower number of the same
 * period.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "alloc.h"
#include "ledger.h"
#include "request.h"
#include "series.h"
#include "util.h"

PG_FUNCTION_INFO_V1(invoice_seq_check_series);

/* Columns of check_series(), then the series id and whether it is a gap. */
enum
{
	CHECK_COLS = 5,
	CHECK_SERIES_ID,
	CHECK_IS_GAP
};

/*
 * $1 is a series id, or NULL for all series.  Gaps come from comparing each
 * entry with the previous one of its period, so the query reads the ledger
 * once, in index order.
 */
static const char *check_query =
"WITH s AS ("
"  SELECT id, name, start_at, stale_after, time_zone, chronological"
"  FROM invoice_seq.series_def"
"  WHERE ($1 IS NULL OR id OPERATOR(pg_catalog.=) $1)"
"    AND pg_catalog.pg_has_role($2, owner::pg_catalog.oid, 'MEMBER')"
"), e AS ("
"  SELECT e.series_id, e.period, e.invoice_no, e.status, e.reserved_at,"
"         e.reserved_by, e.confirmed_at,"
"         pg_catalog.lag(e.invoice_no) OVER (PARTITION BY e.series_id, e.period"
"                                            ORDER BY e.invoice_no) AS prev"
"  FROM invoice_seq.ledger_entry e"
"  WHERE e.series_id IN (SELECT id FROM s)"
")"
" SELECT s.name, e.period, g.n, 'gap',"
"        CASE WHEN e.prev IS NULL"
"             THEN pg_catalog.format('missing from the ledger, which starts at %s; the first entry is %s',"
"                                    s.start_at, e.invoice_no)"
"             ELSE pg_catalog.format('missing from the ledger between entries %s and %s',"
"                                    e.prev, e.invoice_no) END,"
"        s.id, true"
" FROM e JOIN s ON s.id OPERATOR(pg_catalog.=) e.series_id,"
"      pg_catalog.generate_series(COALESCE(e.prev OPERATOR(pg_catalog.+) 1, s.start_at),"
"                                 e.invoice_no OPERATOR(pg_catalog.-) 1) AS g(n)"
" UNION ALL"
" SELECT s.name, e.period, e.invoice_no, 'stale_reservation',"
"        pg_catalog.format('reserved at %s by %s, longer ago than stale_after (%s); confirm or void it',"
"                          e.reserved_at, e.reserved_by, s.stale_after),"
"        s.id, false"
" FROM e JOIN s ON s.id OPERATOR(pg_catalog.=) e.series_id"
" WHERE e.status OPERATOR(pg_catalog.=) 'reserved'"
"   AND e.reserved_at OPERATOR(pg_catalog.<)"
"       (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) s.stale_after)"
" UNION ALL"
" SELECT c.name, c.period, c.invoice_no, 'chronology',"
"        pg_catalog.format('issued on %s, but a lower number of the period was issued on %s',"
"                          pg_catalog.to_char(c.day, 'YYYY-MM-DD'),"
"                          pg_catalog.to_char(c.latest, 'YYYY-MM-DD')),"
"        c.id, false"
" FROM (SELECT s.id, s.name, i.period, i.invoice_no, i.day,"
"              pg_catalog.max(i.day) OVER (PARTITION BY i.series_id, i.period"
"                                          ORDER BY i.invoice_no"
"                                          ROWS BETWEEN UNBOUNDED PRECEDING"
"                                          AND 1 PRECEDING) AS latest"
"       FROM (SELECT e.series_id, e.period, e.invoice_no,"
"                    pg_catalog.timezone(s.time_zone, e.confirmed_at)::pg_catalog.date AS day"
"             FROM e JOIN s ON s.id OPERATOR(pg_catalog.=) e.series_id"
"             WHERE s.chronological"
"               AND e.status OPERATOR(pg_catalog.=) 'issued') i"
"       JOIN s ON s.id OPERATOR(pg_catalog.=) i.series_id) c"
" WHERE c.day OPERATOR(pg_catalog.<) c.latest"
" ORDER BY 1, 2, 3, 4";

/* $1 is a series id, or NULL for all series; $2 the caller. */
static const char *series_query =
"SELECT id, name, pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) stale_after,"
"       stale_after::pg_catalog.text"
" FROM invoice_seq.series_def"
" WHERE ($1 IS NULL OR id OPERATOR(pg_catalog.=) $1)"
"   AND pg_catalog.pg_has_role($2, owner::pg_catalog.oid, 'MEMBER')";

static SPIPlanPtr series_plan = NULL;
static SPIPlanPtr check_plan = NULL;

/* A series that check_series() covers. */
typedef struct CheckSeries
{
	int32		id;				/* hash key */
	char	   *name;
	TimestampTz stale_before;	/* held since before this: stale */
	char	   *stale_after;
} CheckSeries;

/* A problem found, before the rows are sorted. */
typedef struct CheckRow
{
	const char *series;
	const char *period;
	int64		invoice_no;
	const char *problem;
	const char *detail;
} CheckRow;

/* What check_series() has found so far. */
typedef struct CheckState
{
	AllocView  *before;			/* the allocator, before the snapshot */
	Snapshot	snapshot;		/* the ledger is read with */
	AllocView  *after;			/* and the allocator after it */
	HTAB	   *series;
	CheckRow   *rows;
	int			nrows;
	int			maxrows;
} CheckState;

static void
add_row(CheckState *state, const char *series, const char *period,
		int64 invoice_no, const char *problem, const char *detail)
{
	if (state->nrows == state->maxrows)
	{
		state->maxrows = Max(64, state->maxrows * 2);
		state->rows = state->rows == NULL ?
			palloc(sizeof(CheckRow) * state->maxrows) :
			repalloc(state->rows, sizeof(CheckRow) * state->maxrows);
	}
	state->rows[state->nrows].series = series;
	state->rows[state->nrows].period = period;
	state->rows[state->nrows].invoice_no = invoice_no;
	state->rows[state->nrows].problem = problem;
	state->rows[state->nrows].detail = detail;
	state->nrows++;
}

/* Run one of check_series()' statements with the check's snapshot. */
static void
run_check_query(SPIPlanPtr *cache, const char *sql, Datum *args, const char *nulls,
				Snapshot snapshot)
{
	Oid			argtypes[2] = {INT4OID, OIDOID};
	SPIPlanPtr	plan = invoice_seq_plan(cache, sql, 2, argtypes);
	int			rc;

	rc = SPI_execute_snapshot(plan, args, nulls, snapshot,
							  InvalidSnapshot, true, false, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "checking the ledger");
}

/* The series the caller may check (its members' series), by id. */
static HTAB *
read_series(Datum *args, const char *nulls, Snapshot snapshot)
{
	HASHCTL		info;
	HTAB	   *series;

	info.keysize = sizeof(int32);
	info.entrysize = sizeof(CheckSeries);
	info.hcxt = CurrentMemoryContext;
	series = hash_create("invoice_seq checked series", 64, &info,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	run_check_query(&series_plan, series_query, args, nulls, snapshot);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int32		id = DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull));
		CheckSeries *cs = hash_search(series, &id, HASH_ENTER, NULL);

		cs->name = SPI_getvalue(row, desc, 2);
		cs->stale_before = DatumGetTimestampTz(SPI_getbinval(row, desc, 3, &isnull));
		cs->stale_after = SPI_getvalue(row, desc, 4);
	}
	return series;
}

/*
 * A number that a running transaction holds is a problem once it has held
 * it longer than the series' stale_after: a one-step number whose
 * transaction stays open, or a reservation still being recorded.
 */
static void
check_held(CheckState *state, const CheckSeries *cs, const char *period,
		   const HeldNumber *held)
{
	if (held->taken_at >= cs->stale_before)
		return;
	add_row(state, cs->name, period, held->invoice_no, "stale_reservation",
			psprintf("taken at %s by %s with %s, in a transaction still open longer than stale_after (%s)",
					 DatumGetCString(DirectFunctionCall1(timestamptz_out,
														 TimestampTzGetDatum(held->taken_at))),
					 held->taken_by,
					 held->one_step ? "next_invoice_no()" : "reserve_invoice_no()",
					 cs->stale_after));
}

/* One row of the check query: a problem, unless it is a known hole. */
static void
check_row(CheckState *state, HeapTuple row, TupleDesc desc)
{
	bool		isnull;
	int32		series_id = DatumGetInt32(SPI_getbinval(row, desc, CHECK_SERIES_ID, &isnull));
	char	   *period = SPI_getvalue(row, desc, 2);
	int64		n = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
	CheckSeries *cs = hash_search(state->series, &series_id, HASH_FIND, NULL);
	HeldNumber	held;

	if (cs == NULL)
		return;
	if (DatumGetBool(SPI_getbinval(row, desc, CHECK_IS_GAP, &isnull)))
	{
		switch (alloc_hole_kind(state->before, state->after, series_id, period, n))
		{
			case HOLE_FREE:
				return;
			case HOLE_IN_FLIGHT:
				if (ledger_held(series_id, period, n, &held))
					check_held(state, cs, period, &held);
				return;
			case HOLE_LOST:
				break;
		}
	}
	add_row(state, cs->name, period, n, SPI_getvalue(row, desc, 4),
			SPI_getvalue(row, desc, 5));
}

/* The numbers held above every committed one of a busy period. */
typedef struct BusyPeriod
{
	CheckState *state;
	const CheckSeries *series;
	const char *period;
} BusyPeriod;

static void
check_held_at_top(const HeldNumber *held, void *arg)
{
	BusyPeriod *busy = (BusyPeriod *) arg;

	check_held(busy->state, busy->series, busy->period, held);
}

static void
check_busy_period(int32 series_id, const char *period, int64 next, void *arg)
{
	CheckState *state = (CheckState *) arg;
	BusyPeriod	busy;

	busy.state = state;
	busy.series = hash_search(state->series, &series_id, HASH_FIND, NULL);
	busy.period = pstrdup(period);
	if (busy.series != NULL)
		ledger_held_at_top(series_id, period, state->snapshot,
						   check_held_at_top, &busy);
}

static int
row_cmp(const void *a, const void *b)
{
	const CheckRow *x = (const CheckRow *) a;
	const CheckRow *y = (const CheckRow *) b;
	int			c;

	if ((c = strcmp(x->series, y->series)) != 0 ||
		(c = strcmp(x->period, y->period)) != 0)
		return c;
	if (x->invoice_no != y->invoice_no)
		return x->invoice_no < y->invoice_no ? -1 : 1;
	return strcmp(x->problem, y->problem);
}

/*
 * Find the problems of the series in args: the allocator is read, then the
 * ledger with a snapshot taken after it, then the allocator again (see
 * alloc_hole_kind), so that a number whose transaction commits meanwhile
 * is never taken for a gap.
 */
static void
find_problems(CheckState *state, Datum *args, const char *nulls)
{
	int32		series_id = nulls[0] == 'n' ? -1 : DatumGetInt32(args[0]);

	state->before = alloc_view(series_id);
	state->snapshot = RegisterSnapshot(GetLatestSnapshot());
	state->series = read_series(args, nulls, state->snapshot);
	run_check_query(&check_plan, check_query, args, nulls, state->snapshot);
	state->after = alloc_view(series_id);
	for (uint64 i = 0; i < SPI_processed; i++)
		check_row(state, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	alloc_view_busy(state->after, check_busy_period, state);
	UnregisterSnapshot(state->snapshot);
	if (state->nrows > 1)
		qsort(state->rows, state->nrows, sizeof(CheckRow), row_cmp);
}

static void
put_rows(ReturnSetInfo *rsinfo, const CheckState *state)
{
	for (int i = 0; i < state->nrows; i++)
	{
		const CheckRow *r = &state->rows[i];
		Datum		values[CHECK_COLS];
		bool		nulls[CHECK_COLS] = {0};

		values[0] = CStringGetTextDatum(r->series);
		values[1] = CStringGetTextDatum(r->period);
		values[2] = Int64GetDatum(r->invoice_no);
		values[3] = CStringGetTextDatum(r->problem);
		values[4] = CStringGetTextDatum(r->detail);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* invoice_seq.check_series(series) RETURNS TABLE(series, period, invoice_no, problem, detail) */
Datum
invoice_seq_check_series(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			save_userid;
	int			save_sec_context;
	Datum		args[2] = {(Datum) 0, (Datum) 0};
	char		argnulls[2] = {'n', ' '};
	CheckState	state;

	InitMaterializedSRF(fcinfo, 0);
	memset(&state, 0, sizeof(state));

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);

	if (!PG_ARGISNULL(0))
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
		InvoiceSeries series;

		series_check_name(name);
		if (!series_lookup(name, &series))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("invoice series \"%s\" does not exist", name)));
		series_check_member(&series, save_userid);
		args[0] = Int32GetDatum(series.id);
		argnulls[0] = ' ';
	}
	args[1] = ObjectIdGetDatum(save_userid);

	find_problems(&state, args, argnulls);
	put_rows(rsinfo, &state);

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();

	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(invoice_seq_recyclable);

/* Numbers missing from the ledger of the series whose owner $1 belongs to. */
static const char *holes_query =
"SELECT e.series_id, e.period, g.n"
" FROM (SELECT e.series_id, e.period, e.invoice_no,"
"              pg_catalog.lag(e.invoice_no) OVER (PARTITION BY e.series_id, e.period"
"                                                 ORDER BY e.invoice_no) AS prev"
"       FROM invoice_seq.ledger_entry e) e"
" JOIN invoice_seq.series_def s ON s.id OPERATOR(pg_catalog.=) e.series_id,"
"      pg_catalog.generate_series(COALESCE(e.prev OPERATOR(pg_catalog.+) 1, s.start_at),"
"                                 e.invoice_no OPERATOR(pg_catalog.-) 1) AS g(n)"
" WHERE pg_catalog.pg_has_role($1, s.owner::pg_catalog.oid, 'MEMBER')"
" ORDER BY 1, 2, 3";

/*
 * invoice_seq.recyclable() RETURNS TABLE(series_id, period, invoice_no):
 * the free numbers of the caller's series, which the next caller of their
 * period gets.  The ledger view shows them, so that it stays dense.
 */
Datum
invoice_seq_recyclable(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			save_userid;
	int			save_sec_context;
	Oid			argtype = OIDOID;
	Datum		arg;
	uint64		i;
	int			rc;
	AllocView  *view;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);
	arg = ObjectIdGetDatum(save_userid);

	/*
	 * The holes of the query's own snapshot, so that the ledger view is
	 * consistent with its rows; those free now (the allocator is read
	 * after) are shown.
	 */
	rc = SPI_execute_with_args(holes_query, 1, &argtype, &arg, NULL, true, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "finding free numbers");
	view = alloc_view(-1);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = SPI_getbinval(row, desc, 1, &nulls[0]);
		values[1] = SPI_getbinval(row, desc, 2, &nulls[1]);
		values[2] = SPI_getbinval(row, desc, 3, &nulls[2]);
		if (alloc_hole_kind(view, NULL, DatumGetInt32(values[0]),
							SPI_getvalue(row, desc, 2),
							DatumGetInt64(values[2])) == HOLE_FREE)
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(invoice_seq_stats);
PG_FUNCTION_INFO_V1(invoice_seq_stats_reset);

/* Columns of invoice_seq.stats(). */
enum
{
	STATS_DATABASE,
	STATS_SEQUENCER_PID,
	STATS_REQUESTS,
	STATS_BATCHES,
	STATS_MEAN_BATCH,
	STATS_MAX_BATCH,
	STATS_MEAN_WAIT,
	STATS_P99_WAIT,
	STATS_STARTS,
	STATS_RESTARTS,
	STATS_RESET,
	STATS_COLS
};

/* One database's counters, copied out of shared memory. */
typedef struct StatsRow
{
	Oid			dboid;
	pid_t		pid;
	SequencerStats stats;
} StatsRow;

/*
 * The mean and p99 queue waits, in ms.  The p99 is the upper bound of the
 * power-of-two bucket that holds the 99th percentile, so it is exact to a
 * factor of two.
 */
static void
stats_waits(const SequencerStats *stats, Datum *values, bool *nulls)
{
	uint64		waits = 0;
	uint64		seen = 0;
	int			i;

	for (i = 0; i < ISEQ_WAIT_BUCKETS; i++)
		waits += stats->wait_buckets[i];
	if (waits == 0)
	{
		nulls[STATS_MEAN_WAIT] = nulls[STATS_P99_WAIT] = true;
		return;
	}
	values[STATS_MEAN_WAIT] =
		Float8GetDatum((double) stats->wait_sum_us / waits / 1000.0);
	for (i = 0; i < ISEQ_WAIT_BUCKETS; i++)
	{
		seen += stats->wait_buckets[i];
		if (seen * 100 >= waits * 99)
			break;
	}
	values[STATS_P99_WAIT] = Float8GetDatum(
		(double) (UINT64CONST(1) << Min(i, ISEQ_WAIT_BUCKETS - 1)) / 1000.0);
}

static void
stats_put_row(ReturnSetInfo *rsinfo, const StatsRow *row, const char *dbname)
{
	const SequencerStats *stats = &row->stats;
	Datum		values[STATS_COLS];
	bool		nulls[STATS_COLS] = {0};

	values[STATS_DATABASE] = CStringGetTextDatum(dbname);
	values[STATS_SEQUENCER_PID] = Int32GetDatum(row->pid);
	nulls[STATS_SEQUENCER_PID] = (row->pid == 0);
	values[STATS_REQUESTS] = Int64GetDatum((int64) stats->requests);
	values[STATS_BATCHES] = Int64GetDatum((int64) stats->batches);
	if (stats->batches > 0)
		values[STATS_MEAN_BATCH] =
			Float8GetDatum((double) stats->requests / stats->batches);
	else
		nulls[STATS_MEAN_BATCH] = true;
	values[STATS_MAX_BATCH] = Int64GetDatum((int64) stats->max_batch);
	stats_waits(stats, values, nulls);
	values[STATS_STARTS] = Int64GetDatum((int64) stats->starts);
	values[STATS_RESTARTS] = Int64GetDatum((int64) stats->failures);
	values[STATS_RESET] = TimestampTzGetDatum(stats->reset_at);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * invoice_seq.stats(): one row per database whose sequencer has run, or
 * been asked for, since the server started (entries evicted for other
 * databases are gone; see invoice_seq.max_databases).  Aggregates only, as
 * pg_stat_database shows.
 */
Datum
invoice_seq_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StatsRow   *rows;
	int			nrows = 0;
	int			i;

	request_require_preloaded();
	invoice_seq_check_schema_version();
	InitMaterializedSRF(fcinfo, 0);

	rows = palloc(sizeof(StatsRow) * sequencer_shared->ndatabases);
	LWLockAcquire(sequencer_shared->lock, LW_SHARED);
	for (i = 0; i < sequencer_shared->ndatabases; i++)
	{
		DatabaseSequencer *db = &sequencer_shared->databases[i];

		if (!OidIsValid(db->dboid))
			continue;
		rows[nrows].dboid = db->dboid;
		rows[nrows].pid = db->pid;
		rows[nrows].stats = db->stats;
		nrows++;
	}
	LWLockRelease(sequencer_shared->lock);

	for (i = 0; i < nrows; i++)
	{
		char	   *dbname = get_database_name(rows[i].dboid);

		/* a database dropped since */
		if (dbname != NULL)
			stats_put_row(rsinfo, &rows[i], dbname);
	}
	return (Datum) 0;
}

/* invoice_seq.stats_reset(): zero every database's counters. */
Datum
invoice_seq_stats_reset(PG_FUNCTION_ARGS)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (sequencer_shared == NULL)
		PG_RETURN_VOID();
	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < sequencer_shared->ndatabases; i++)
	{
		SequencerStats *stats = &sequencer_shared->databases[i].stats;

		memset(stats, 0, sizeof(SequencerStats));
		stats->reset_at = now;
	}
	LWLockRelease(sequencer_shared->lock);
	PG_RETURN_VOID();
}
