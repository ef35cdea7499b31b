/*-------------------------------------------------------------------------
 *
 * close.c
 *		close_period(): the end of a (series, period) in the legal record.
 *
 * Closing takes the series lock exclusively, as alter_series does, so it
 * waits for every other transaction that holds a number of the series and
 * keeps new ones out until it ends.  With the lock held, a number missing
 * from the ledger is free (no other transaction holds one; the closing
 * transaction's own numbers have their rows), so it is claimed from the
 * allocator and voided with the reason: if the closing rolls back, it is
 * free again.  A reserved number blocks the closing: only a person, or the
 * application's reconciliation, can say whether the integrator accepted it.
 * Then the chain is sealed to its end, and the closing is recorded in
 * invoice_seq.period_close (an invoice_ledger table) with its counts and
 * final link.  The closing transaction takes no more numbers of the period
 * at once, everyone else once it commits (alloc_close_at_commit); a
 * rollback leaves the period open.  Confirm and void find nothing they may
 * change.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "alloc.h"
#include "chain.h"
#include "ledger.h"
#include "series.h"
#include "sqlstate.h"
#include "util.h"

PG_FUNCTION_INFO_V1(invoice_seq_close_period);

/* Reserved numbers listed in the refusal, at most. */
#define CLOSE_LIST_MAX		20

/* Columns of close_period()'s row, and of its counting query. */
enum
{
	CLOSE_ISSUED,
	CLOSE_VOIDED,
	CLOSE_LAST_NO,
	CLOSE_LINK,
	CLOSE_COLS
};

/*
 * Run a statement about one (series, period) with up to two more args,
 * with a snapshot taken now (invoice_seq_execute), after the series lock
 * was granted: it sees every number that was committed while the closing
 * waited, whatever the caller's isolation level.
 */
static void
period_query(const char *sql, const InvoiceSeries *series, const char *period,
			 int nextra, Oid *extra_types, Datum *extra)
{
	Oid			types[4] = {INT4OID, TEXTOID, InvalidOid, InvalidOid};
	Datum		args[4];
	SPIPlanPtr	plan;
	int			rc;

	args[0] = Int32GetDatum(series->id);
	args[1] = CStringGetTextDatum(period);
	for (int i = 0; i < nextra; i++)
	{
		types[2 + i] = extra_types[i];
		args[2 + i] = extra[i];
	}
	plan = SPI_prepare(sql, 2 + nextra, types);
	if (plan == NULL)
		invoice_seq_spi_check(SPI_result, SPI_OK_SELECT, "closing the period");
	rc = invoice_seq_execute(plan, args, NULL, false, 0);
	if (rc < 0)
		invoice_seq_spi_check(rc, SPI_OK_SELECT, "closing the period");
	SPI_freeplan(plan);
}

/* Refuse (55000) while the period has numbers reserved, listing them. */
static void
refuse_reserved(const InvoiceSeries *series, const char *period, const char *label)
{
	StringInfoData list;

	period_query("SELECT invoice_no FROM invoice_seq.ledger_entry"
				 " WHERE series_id OPERATOR(pg_catalog.=) $1"
				 "   AND period OPERATOR(pg_catalog.=) $2"
				 "   AND status OPERATOR(pg_catalog.=) 'reserved'"
				 " ORDER BY invoice_no",
				 series, period, 0, NULL, NULL);
	if (SPI_processed == 0)
		return;
	initStringInfo(&list);
	for (uint64 i = 0; i < SPI_processed && i < CLOSE_LIST_MAX; i++)
		appendStringInfo(&list, "%s%s", i > 0 ? ", " : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	if (SPI_processed > CLOSE_LIST_MAX)
		appendStringInfoString(&list, ", ...");
	ereport(ERROR,
			(errcode(ERRCODE_ISEQ_NUMBERS_RESERVED),
			 errmsg("cannot close %s: numbers are reserved", label),
			 errdetail("Reserved: %s.", list.data),
			 errhint("Confirm or void each of them (ask the integrator first), then close the period.")));
}

/* Void every number missing from the ledger below its highest; how many. */
static int64
void_free_numbers(const InvoiceSeries *series, const char *period,
				  const char *reason, TimestampTz now)
{
	SPITupleTable *holes;
	uint64		nholes;
	Oid			types[1] = {INT8OID};
	Datum		from[1] = {Int64GetDatum(series->start_at)};

	period_query("SELECT g.n FROM"
				 " (SELECT invoice_no,"
				 "         pg_catalog.lag(invoice_no) OVER (ORDER BY invoice_no) AS prev"
				 "  FROM invoice_seq.ledger_entry"
				 "  WHERE series_id OPERATOR(pg_catalog.=) $1"
				 "    AND period OPERATOR(pg_catalog.=) $2) e,"
				 " pg_catalog.generate_series(COALESCE(e.prev OPERATOR(pg_catalog.+) 1, $3),"
				 "                            e.invoice_no OPERATOR(pg_catalog.-) 1) AS g(n)"
				 " ORDER BY g.n",
				 series, period, 1, types, from);
	holes = SPI_tuptable;
	nholes = SPI_processed;
	for (uint64 i = 0; i < nholes; i++)
	{
		bool		isnull;

		ledger_void_free(series, period,
						 DatumGetInt64(SPI_getbinval(holes->vals[i], holes->tupdesc, 1, &isnull)),
						 now, reason);
	}
	SPI_freetuptable(holes);
	return (int64) nholes;
}

/* Count the period, record its closing, and fill the result row. */
static void
record_closing(const InvoiceSeries *series, const char *period,
			   const char *caller, const char *reason, Datum *values, bool *nulls)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		extra[2] = {CStringGetTextDatum(caller), CStringGetTextDatum(reason)};

	period_query("INSERT INTO invoice_seq.period_close"
				 " (series_id, period, closed_at, closed_by, reason,"
				 "  issued, voided, last_no, final_link)"
				 " SELECT $1, $2, pg_catalog.now(), $3, $4,"
				 "        pg_catalog.count(*) FILTER (WHERE e.status OPERATOR(pg_catalog.=) 'issued'),"
				 "        pg_catalog.count(*) FILTER (WHERE e.status OPERATOR(pg_catalog.=) 'voided'),"
				 "        pg_catalog.max(e.invoice_no),"
				 "        (SELECT l.link FROM invoice_seq.ledger_link l"
				 "         WHERE l.series_id OPERATOR(pg_catalog.=) $1"
				 "           AND l.period OPERATOR(pg_catalog.=) $2"
				 "         ORDER BY l.invoice_no DESC LIMIT 1)"
				 " FROM invoice_seq.ledger_entry e"
				 " WHERE e.series_id OPERATOR(pg_catalog.=) $1"
				 "   AND e.period OPERATOR(pg_catalog.=) $2"
				 " RETURNING issued, voided, last_no,"
				 "           pg_catalog.encode(final_link, 'hex')",
				 series, period, 2, types, extra);
	for (int col = 0; col < CLOSE_COLS; col++)
		values[col] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									col + 1, &nulls[col]);
	/* the link outlives SPI_finish() */
	if (!nulls[CLOSE_LINK])
		values[CLOSE_LINK] = SPI_datumTransfer(values[CLOSE_LINK], false, -1);
}

/* Check the arguments: series, period and a reason that is not blank. */
static void
close_args(FunctionCallInfo fcinfo, char **name, char **reason)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", PG_ARGISNULL(0) ? "series" : "reason")));
	*name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	series_check_name(*name);
	*reason = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if ((*reason)[strspn(*reason, " \t\r\n")] == '\0' || strlen(*reason) > ISEQ_MAX_REASON)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid reason for closing a period of invoice series \"%s\"", *name),
				 errdetail("A reason is not blank and has at most %d bytes.", ISEQ_MAX_REASON)));
}

/*
 * invoice_seq.close_period(series, period, reason) RETURNS TABLE(issued,
 * voided, last_no, link)
 */
Datum
invoice_seq_close_period(PG_FUNCTION_ARGS)
{
	TupleDesc	desc = invoice_seq_result_desc(fcinfo);
	InvoiceSeries series;
	char	   *name;
	char	   *reason;
	char	   *period;
	char	   *caller = GetUserNameFromId(GetUserId(), false);
	Datum		values[CLOSE_COLS];
	bool		nulls[CLOSE_COLS];
	Oid			save_userid;
	int			save_sec_context;

	close_args(fcinfo, &name, &reason);
	PreventCommandDuringRecovery("close_period()");
	PreventCommandIfReadOnly("close_period()");

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);
	series_get(name, &series);
	series_check_member(&series, save_userid);
	period = resolve_period(&series, PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
	/* the series may have changed hands while we waited for its lock */
	series_lock_and_reread(&series, save_userid, false);

	if (invoice_seq_period_closed(series.id, period))
		ereport(ERROR,
				(errcode(ERRCODE_ISEQ_PERIOD_CLOSED),
				 errmsg("%s is already closed", period_label(series.name, period))));
	refuse_reserved(&series, period, period_label(series.name, period));
	(void) void_free_numbers(&series, period,
							 psprintf("period closed by %s: %s", caller, reason),
							 invoice_seq_now());
	alloc_close_at_commit(&series, period);
	chain_seal_to_end(&series, period);
	record_closing(&series, period, caller, reason, values, nulls);

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
