/*-------------------------------------------------------------------------
 *
 * record.c
 *		The legal record's SQL functions: verify_series(), chain_head() and
 *		export_series().
 *
 * Each checks the caller's membership in the series' owner role in the
 * caller's own identity, then reads (and, for chain_head() and
 * export_series(), seals) as the extension's owner.  verify_series() never
 * seals: it must judge what is there, not add to it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "alloc.h"
#include "chain.h"
#include "ledger.h"
#include "series.h"
#include "util.h"

PG_FUNCTION_INFO_V1(invoice_seq_verify_series);
PG_FUNCTION_INFO_V1(invoice_seq_chain_head);
PG_FUNCTION_INFO_V1(invoice_seq_export_series);

/* Columns of verify_series(), as check_series() has them. */
enum
{
	VERIFY_SERIES,
	VERIFY_PERIOD,
	VERIFY_INVOICE_NO,
	VERIFY_PROBLEM,
	VERIFY_DETAIL,
	VERIFY_COLS
};

/* The export formats of export_series(). */
typedef enum ExportFormat
{
	EXPORT_JSONL,
	EXPORT_CSV
} ExportFormat;

/* The chain a call is about, and the caller it runs for. */
typedef struct RecordCall
{
	InvoiceSeries series;
	char	   *period;
	Oid			save_userid;
	int			save_sec_context;
} RecordCall;

/* One row of the verify query: an entry, its link, or both. */
typedef struct VerifyRow
{
	int64		invoice_no;
	bool		has_entry;
	bool		has_link;
	ChainLink	link;
} VerifyRow;

/*
 * Connect to SPI, check the arguments and the caller's membership, and
 * become the extension's owner.
 */
static void
record_begin(FunctionCallInfo fcinfo, RecordCall *call)
{
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("series must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	series_check_name(name);

	SPI_connect();
	invoice_seq_become_owner(&call->save_userid, &call->save_sec_context);
	series_get(name, &call->series);
	series_check_member(&call->series, call->save_userid);
	call->period = resolve_period(&call->series,
								  PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
}

static void
record_end(RecordCall *call)
{
	SetUserIdAndSecContext(call->save_userid, call->save_sec_context);
	SPI_finish();
}

/* Seal the chain to its end, unless this transaction cannot write. */
static void
record_seal(RecordCall *call)
{
	if (XactReadOnly || RecoveryInProgress())
		return;
	chain_seal_to_end(&call->series, call->period);
}

static void
put_problem(ReturnSetInfo *rsinfo, const RecordCall *call, int64 invoice_no,
			const char *problem, const char *detail)
{
	Datum		values[VERIFY_COLS];
	bool		nulls[VERIFY_COLS] = {0};

	values[VERIFY_SERIES] = CStringGetTextDatum(call->series.name);
	values[VERIFY_PERIOD] = CStringGetTextDatum(call->period);
	values[VERIFY_INVOICE_NO] = Int64GetDatum(invoice_no);
	values[VERIFY_PROBLEM] = CStringGetTextDatum(problem);
	values[VERIFY_DETAIL] = CStringGetTextDatum(detail);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

static SPIPlanPtr chain_plan = NULL;

/*
 * Every entry and every link of the chain, merged by number: read with
 * snapshot, or (InvalidSnapshot) with the statement's own.
 */
static void
read_chain(const RecordCall *call, Snapshot snapshot)
{
	Datum		args[2];
	Oid			types[2] = {INT4OID, TEXTOID};
	SPIPlanPtr	plan;
	int			rc;

	args[0] = Int32GetDatum(call->series.id);
	args[1] = CStringGetTextDatum(call->period);
	plan = invoice_seq_plan(&chain_plan,
							"SELECT COALESCE(e.invoice_no, l.invoice_no), e.invoice_no IS NOT NULL,"
							" l.link, " CHAIN_ENTRY_COLUMNS
							" FROM (SELECT * FROM invoice_seq.ledger_entry"
							"       WHERE series_id OPERATOR(pg_catalog.=) $1"
							"         AND period OPERATOR(pg_catalog.=) $2) e"
							" FULL JOIN (SELECT invoice_no, link FROM invoice_seq.ledger_link"
							"            WHERE series_id OPERATOR(pg_catalog.=) $1"
							"              AND period OPERATOR(pg_catalog.=) $2) l"
							"   ON l.invoice_no OPERATOR(pg_catalog.=) e.invoice_no"
							" ORDER BY 1",
							2, types);
	if (snapshot != InvalidSnapshot)
		rc = SPI_execute_snapshot(plan, args, NULL, snapshot, InvalidSnapshot,
								  true, false, 0);
	else
		rc = SPI_execute_plan(plan, args, NULL, true, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "reading the chain");
}

static void
verify_row(HeapTuple row, TupleDesc desc, VerifyRow *v)
{
	bool		isnull;
	Datum		d;

	v->invoice_no = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	v->has_entry = DatumGetBool(SPI_getbinval(row, desc, 2, &isnull));
	d = SPI_getbinval(row, desc, 3, &isnull);
	v->has_link = !isnull && chain_link_from_datum(d, &v->link);
}

/*
 * A number missing from the ledger below a present one: a gap if it was
 * sealed, or if the allocator does not know it as free or in flight.
 */
static bool
missing_is_gap(const RecordCall *call, const AllocView *before,
			   const AllocView *after, int64 n, const ChainHead *head)
{
	if (head->sealed && n <= head->invoice_no)
		return true;
	return alloc_hole_kind(before, after, call->series.id, call->period, n) == HOLE_LOST;
}

/*
 * Recompute the chain and its density; report the first problem.  Returns
 * false once a problem was put.
 */
static bool
verify_chain(ReturnSetInfo *rsinfo, const RecordCall *call)
{
	ChainHead	head;
	ChainLink	computed;
	bool		have_prev = false;
	int64		expected = call->series.start_at;
	StringInfoData buf;
	AllocView  *before;
	AllocView  *after;

	chain_head(call->series.id, call->period, &head);
	/* the allocator, the ledger, the allocator: see alloc_hole_kind() */
	before = alloc_view(call->series.id);
	read_chain(call, GetLatestSnapshot());
	after = alloc_view(call->series.id);
	initStringInfo(&buf);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		VerifyRow	v;
		ChainEntry	entry;

		verify_row(row, SPI_tuptable->tupdesc, &v);
		for (; expected < v.invoice_no; expected++)
			if (missing_is_gap(call, before, after, expected, &head))
			{
				put_problem(rsinfo, call, expected, "gap", "The number is missing from the ledger.");
				return false;
			}
		expected = v.invoice_no + 1;
		if (!v.has_entry)
		{
			put_problem(rsinfo, call, v.invoice_no, "gap",
						"The number was sealed, but its entry is missing from the ledger.");
			return false;
		}
		if (!head.sealed || v.invoice_no > head.invoice_no)
			continue;
		if (!v.has_link)
		{
			put_problem(rsinfo, call, v.invoice_no, "broken_link",
						"The number is below the chain head, but its link is missing.");
			return false;
		}
		chain_entry_from_row(row, SPI_tuptable->tupdesc, 4, &entry);
		chain_encode(&buf, call->series.name, call->period, &entry,
					 have_prev ? &computed : NULL);
		chain_hash(&buf, &computed);
		have_prev = true;
		if (memcmp(computed.hash, v.link.hash, sizeof(computed.hash)) != 0)
		{
			put_problem(rsinfo, call, v.invoice_no, "broken_link",
						"The entry, or its link, differs from what was sealed.");
			return false;
		}
	}
	return true;
}

/* A closing's figures, or those the ledger and its chain hold. */
typedef struct ClosingFigures
{
	int64		issued;
	int64		voided;
	bool		has_last;
	int64		last_no;
	bool		has_link;
	ChainLink	link;
} ClosingFigures;

static SPIPlanPtr closing_plan = NULL;

static void
closing_figures(HeapTuple row, TupleDesc desc, int first, ClosingFigures *f)
{
	bool		isnull;
	Datum		d;

	f->issued = DatumGetInt64(SPI_getbinval(row, desc, first, &isnull));
	f->voided = DatumGetInt64(SPI_getbinval(row, desc, first + 1, &isnull));
	d = SPI_getbinval(row, desc, first + 2, &isnull);
	f->has_last = !isnull;
	f->last_no = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(row, desc, first + 3, &isnull);
	f->has_link = !isnull && chain_link_from_datum(d, &f->link);
}

static bool
same_figures(const ClosingFigures *a, const ClosingFigures *b)
{
	return a->issued == b->issued && a->voided == b->voided &&
		a->has_last == b->has_last && (!a->has_last || a->last_no == b->last_no) &&
		a->has_link == b->has_link &&
		(!a->has_link || memcmp(a->link.hash, b->link.hash, sizeof(a->link.hash)) == 0);
}

static char *
figures_text(const ClosingFigures *f)
{
	return psprintf(INT64_FORMAT " issued, " INT64_FORMAT " voided, last number %s, final link %s",
					f->issued, f->voided,
					f->has_last ? psprintf(INT64_FORMAT, f->last_no) : "none",
					f->has_link ? hex_text(f->link.hash, sizeof(f->link.hash)) : "none");
}

/*
 * A closed period's closing must hold what its ledger and chain hold: the
 * numbers issued and voided, the last number, and the last link (the chain
 * was sealed to its end before the closing was recorded, and the period
 * takes nothing after it).  Returns false once a problem was put.
 */
static bool
verify_closing(ReturnSetInfo *rsinfo, const RecordCall *call)
{
	Datum		args[2] = {Int32GetDatum(call->series.id), CStringGetTextDatum(call->period)};
	Oid			types[2] = {INT4OID, TEXTOID};
	ClosingFigures recorded;
	ClosingFigures actual;
	SPIPlanPtr	plan;
	int			rc;

	plan = invoice_seq_plan(&closing_plan,
							"SELECT c.issued, c.voided, c.last_no, c.final_link,"
							"       n.issued, n.voided, n.last_no,"
							"       (SELECT l.link FROM invoice_seq.ledger_link l"
							"        WHERE l.series_id OPERATOR(pg_catalog.=) $1"
							"          AND l.period OPERATOR(pg_catalog.=) $2"
							"        ORDER BY l.invoice_no DESC LIMIT 1)"
							" FROM invoice_seq.period_close c,"
							" (SELECT pg_catalog.count(*) FILTER (WHERE e.status OPERATOR(pg_catalog.=) 'issued') AS issued,"
							"         pg_catalog.count(*) FILTER (WHERE e.status OPERATOR(pg_catalog.=) 'voided') AS voided,"
							"         pg_catalog.max(e.invoice_no) AS last_no"
							"  FROM invoice_seq.ledger_entry e"
							"  WHERE e.series_id OPERATOR(pg_catalog.=) $1"
							"    AND e.period OPERATOR(pg_catalog.=) $2) n"
							" WHERE c.series_id OPERATOR(pg_catalog.=) $1"
							"   AND c.period OPERATOR(pg_catalog.=) $2",
							2, types);
	rc = SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "reading the period's closing");
	if (SPI_processed == 0)
		return true;			/* the period is open */
	closing_figures(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &recorded);
	closing_figures(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &actual);
	if (same_figures(&recorded, &actual))
		return true;
	put_problem(rsinfo, call,
				recorded.has_last ? recorded.last_no :
				actual.has_last ? actual.last_no : call->series.start_at,
				"rewritten_closing",
				psprintf("The closing records %s; the ledger and its chain hold %s.",
						 figures_text(&recorded), figures_text(&actual)));
	return false;
}

/*
 * invoice_seq.verify_series(series, period) RETURNS TABLE(series, period,
 * invoice_no, problem, detail): no rows if the chain, the density and the
 * period's closing hold, else the first broken link, gap or rewritten
 * closing.
 */
Datum
invoice_seq_verify_series(PG_FUNCTION_ARGS)
{
	RecordCall	call;

	InitMaterializedSRF(fcinfo, 0);
	record_begin(fcinfo, &call);
	if (verify_chain((ReturnSetInfo *) fcinfo->resultinfo, &call))
		(void) verify_closing((ReturnSetInfo *) fcinfo->resultinfo, &call);
	record_end(&call);
	return (Datum) 0;
}

/*
 * invoice_seq.chain_head(series, period) RETURNS TABLE(invoice_no, link):
 * the highest sealed number and its link (hex), after sealing what can be.
 */
Datum
invoice_seq_chain_head(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	RecordCall	call;
	ChainHead	head;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	record_begin(fcinfo, &call);
	record_seal(&call);
	chain_head(call.series.id, call.period, &head);
	if (head.sealed)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = Int64GetDatum(head.invoice_no);
		values[1] = CStringGetTextDatum(hex_text(head.link.hash, sizeof(head.link.hash)));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	record_end(&call);
	return (Datum) 0;
}

static ExportFormat
export_format(FunctionCallInfo fcinfo)
{
	char	   *format = PG_ARGISNULL(2) ? "jsonl" : text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (strcmp(format, "jsonl") == 0)
		return EXPORT_JSONL;
	if (strcmp(format, "csv") == 0)
		return EXPORT_CSV;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid export format \"%s\"", format),
			 errhint("The formats are 'jsonl' and 'csv'.")));
	return EXPORT_JSONL;		/* keep compiler quiet */
}

/* A CSV field, quoted. */
static void
append_csv(StringInfo buf, const char *value)
{
	appendStringInfoChar(buf, '"');
	for (const char *p = value; *p; p++)
	{
		if (*p == '"')
			appendStringInfoChar(buf, '"');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '"');
}

/* One exported entry: its number, status, encoding and stored link. */
static void
export_line(StringInfo out, ExportFormat format, const RecordCall *call,
			const ChainEntry *entry, const StringInfo encoding, const char *link)
{
	resetStringInfo(out);
	if (format == EXPORT_JSONL)
	{
		appendStringInfoString(out, "{\"series\": ");
		escape_json(out, call->series.name);
		appendStringInfoString(out, ", \"period\": ");
		escape_json(out, call->period);
		appendStringInfo(out, ", \"invoice_no\": " INT64_FORMAT ", \"status\": ",
						 entry->invoice_no);
		escape_json(out, entry->status);
		appendStringInfoString(out, ", \"encoding\": ");
		escape_json(out, encoding->data);
		appendStringInfo(out, ", \"link\": \"%s\"}", link);
		return;
	}
	append_csv(out, call->series.name);
	appendStringInfoChar(out, ',');
	append_csv(out, call->period);
	appendStringInfo(out, "," INT64_FORMAT ",", entry->invoice_no);
	append_csv(out, entry->status);
	appendStringInfoChar(out, ',');
	append_csv(out, encoding->data);
	appendStringInfo(out, ",%s", link);
}

/*
 * invoice_seq.export_series(series, period, format DEFAULT 'jsonl')
 * RETURNS SETOF text: the sealed chain, one line per entry, with its
 * canonical encoding (rebuilt from the entry as it is now, and the stored
 * link of the entry before) and its stored link.  tools/verify_chain
 * checks it without a database.
 */
Datum
invoice_seq_export_series(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	RecordCall	call;
	ExportFormat format = export_format(fcinfo);
	StringInfoData encoding;
	StringInfoData line;
	ChainLink	prev;
	bool		have_prev = false;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	record_begin(fcinfo, &call);
	record_seal(&call);
	read_chain(&call, InvalidSnapshot);
	initStringInfo(&encoding);
	initStringInfo(&line);
	if (format == EXPORT_CSV)
	{
		Datum		header = CStringGetTextDatum("series,period,invoice_no,status,encoding,link");
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &header, &isnull);
	}
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		VerifyRow	v;
		ChainEntry	entry;
		Datum		value;
		bool		isnull = false;

		verify_row(row, SPI_tuptable->tupdesc, &v);
		if (!v.has_entry || !v.has_link)
			continue;
		chain_entry_from_row(row, SPI_tuptable->tupdesc, 4, &entry);
		chain_encode(&encoding, call.series.name, call.period, &entry,
					 have_prev ? &prev : NULL);
		export_line(&line, format, &call, &entry, &encoding,
					hex_text(v.link.hash, sizeof(v.link.hash)));
		value = CStringGetTextDatum(line.data);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
		prev = v.link;
		have_prev = true;
	}
	record_end(&call);
	return (Datum) 0;
}
