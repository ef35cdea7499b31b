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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "invoice_seq.h"

PG_FUNCTION_INFO_V1(invoice_seq_confirm_invoice_no);
PG_FUNCTION_INFO_V1(invoice_seq_void_invoice_no);

static SPIPlanPtr key_plan = NULL;
static SPIPlanPtr last_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr lock_entry_plan = NULL;
static SPIPlanPtr confirm_plan = NULL;
static SPIPlanPtr void_plan = NULL;

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
 * Allocate a number of a series, or find the one already reserved under the
 * idempotency key.  Runs in the sequencer, inside a subtransaction of the
 * batch, connected to SPI, holding the series lock.
 */
void
ledger_reserve(const InvoiceSeries *series, const char *key, const char *role,
			   TimestampTz now, ReservedNumber *result)
{
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		invoice_no;
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
		TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID};
		SPIPlanPtr	plan = invoice_seq_plan(&insert_plan,
									   "INSERT INTO invoice_seq.ledger_entry"
									   " (series_id, period, invoice_no, display_no, status,"
									   "  reserved_at, reserved_by, idempotency_key)"
									   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
									   8, argtypes);

		values[0] = Int32GetDatum(series->id);
		values[1] = CStringGetTextDatum(result->period);
		values[2] = Int64GetDatum(invoice_no);
		values[3] = CStringGetTextDatum(result->display_no);
		values[4] = CStringGetTextDatum("reserved");
		values[5] = TimestampTzGetDatum(now);
		values[6] = CStringGetTextDatum(role);
		if (key != NULL)
			values[7] = CStringGetTextDatum(key);
		else
			nulls[7] = 'n';
		rc = invoice_seq_execute(plan, values, nulls, false, 0);
		invoice_seq_spi_check(rc, SPI_OK_INSERT, "recording the reservation");
	}
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
	period = resolve_period(&series, PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));
	label = number_label(series.name, period, invoice_no);

	values[0] = Int32GetDatum(series.id);
	values[1] = CStringGetTextDatum(period);
	values[2] = Int64GetDatum(invoice_no);

	plan = invoice_seq_plan(&lock_entry_plan,
					   "SELECT status, external_ref FROM invoice_seq.ledger_entry"
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

	if (strcmp(status, "voided") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s %s: it is voided", confirm ? "confirm" : "void", label),
				 errdetail("A voided number stays voided.")));

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

	/* $4 = when, $5 = who, $6 = external_ref or void reason */
	values[3] = TimestampTzGetDatum(GetCurrentTimestamp());
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
	rc = invoice_seq_execute(plan, values, nulls, false, 0);
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
