/*-------------------------------------------------------------------------
 *
 * chain.c
 *		The hash chain over the ledger: sealing, verifying, the chain head
 *		and the export for auditors.
 *
 * Each (series, period) has a chain.  Every final entry (issued or voided)
 * gets a link, the SHA-256 of its canonical encoding, which includes the
 * previous entry's link; the encoding is documented, versioned, and
 * rebuilt by tools/verify_chain from an export (docs/chain.md).  Links are
 * rows of invoice_seq.ledger_link, an invoice_ledger table: inserted, never
 * changed or deleted by any SQL path.
 *
 * Sealing.  An entry can be linked once every lower number of its period is
 * final, so a chain is sealed from its head upwards and stops at the first
 * number that is reserved, free or in flight.  The links of one pass are
 * inserted by one statement.  Nothing that hands out a
 * number seals: the sequencer seals between batches (chain_seal_database),
 * and chain_head(), export_series() and close_period() seal before they
 * answer.
 *
 * Locking: sealing a chain holds the seal lock of its (series, period), an
 * advisory lock of class ISEQ_SEAL_LOCK_CLASS, until the transaction ends.
 * The sequencer only tries it; a caller of chain_head() waits for it.  Two
 * sealers thus never link the same number.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/hash.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "chain.h"
#include "seal_due.h"
#include "series.h"
#include "util.h"

#define CHAIN_ENCODING_HEADER	"invoice_seq chain v1"

static SPIPlanPtr head_plan = NULL;
static SPIPlanPtr entries_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr pairs_plan = NULL;

/* Chains chain_seal_database() lists per call, at most. */
#define ISEQ_SEAL_LIST			1000

/* Read columns first .. first + 7 of a row into a ChainEntry. */
void
chain_entry_from_row(HeapTuple row, TupleDesc desc, int first, ChainEntry *entry)
{
	bool		isnull;
	Datum		d;

	entry->invoice_no = DatumGetInt64(SPI_getbinval(row, desc, first, &isnull));
	entry->display_no = SPI_getvalue(row, desc, first + 1);
	entry->status = SPI_getvalue(row, desc, first + 2);
	entry->external_ref = SPI_getvalue(row, desc, first + 3);
	entry->void_reason = SPI_getvalue(row, desc, first + 4);
	entry->actor = SPI_getvalue(row, desc, first + 5);
	d = SPI_getbinval(row, desc, first + 6, &isnull);
	entry->at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(row, desc, first + 7, &isnull);
	entry->app_digest = isnull ? NULL : DatumGetByteaPP(d);
}

/* "name value\n", the value escaped (\\, \n, \r), or \N for NULL. */
static void
append_field(StringInfo buf, const char *name, const char *value)
{
	const char *p;

	appendStringInfo(buf, "%s ", name);
	if (value == NULL)
		appendStringInfoString(buf, "\\N");
	else
		for (p = value; *p; p++)
		{
			if (*p == '\\')
				appendStringInfoString(buf, "\\\\");
			else if (*p == '\n')
				appendStringInfoString(buf, "\\n");
			else if (*p == '\r')
				appendStringInfoString(buf, "\\r");
			else
				appendStringInfoChar(buf, *p);
		}
	appendStringInfoChar(buf, '\n');
}

/* Lower-case hex of some bytes. */
char *
hex_text(const uint8 *bytes, size_t len)
{
	char	   *out = palloc(len * 2 + 1);

	hex_encode((const char *) bytes, len, out);
	out[len * 2] = '\0';
	return out;
}

/* A timestamp in UTC, to the microsecond: 2026-11-23T10:15:03.123456Z. */
static char *
utc_text(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range for the chain encoding")));
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * The canonical encoding of an entry, version 1 (docs/chain.md): a header
 * line, then one "name value" line per field, in a fixed order.
 */
void
chain_encode(StringInfo buf, const char *series, const char *period,
			 const ChainEntry *entry, const ChainLink *prev)
{
	char		number[32];

	snprintf(number, sizeof(number), INT64_FORMAT, entry->invoice_no);
	resetStringInfo(buf);
	appendStringInfoString(buf, CHAIN_ENCODING_HEADER "\n");
	append_field(buf, "series", series);
	append_field(buf, "period", period);
	append_field(buf, "invoice_no", number);
	append_field(buf, "display_no", entry->display_no);
	append_field(buf, "status", entry->status);
	append_field(buf, "external_ref", entry->external_ref);
	append_field(buf, "void_reason", entry->void_reason);
	append_field(buf, "actor", entry->actor);
	append_field(buf, "at", utc_text(entry->at));
	append_field(buf, "app_digest", entry->app_digest == NULL ? NULL :
				 hex_text((uint8 *) VARDATA_ANY(entry->app_digest),
						  VARSIZE_ANY_EXHDR(entry->app_digest)));
	append_field(buf, "prev", prev == NULL ? NULL :
				 hex_text(prev->hash, sizeof(prev->hash)));
}

/* The link of an encoding: its SHA-256. */
void
chain_hash(const StringInfo encoding, ChainLink *link)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) encoding->data, encoding->len) < 0 ||
		pg_cryptohash_final(ctx, link->hash, sizeof(link->hash)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 digest")));
	pg_cryptohash_free(ctx);
}

/* Copy a bytea link into a ChainLink; false if it is not 32 bytes. */
bool
chain_link_from_datum(Datum d, ChainLink *link)
{
	bytea	   *b = DatumGetByteaPP(d);

	if (VARSIZE_ANY_EXHDR(b) != sizeof(link->hash))
		return false;
	memcpy(link->hash, VARDATA_ANY(b), sizeof(link->hash));
	return true;
}

void
chain_head(int32 series_id, const char *period, ChainHead *head)
{
	Datum		args[2] = {Int32GetDatum(series_id), CStringGetTextDatum(period)};
	Oid			types[2] = {INT4OID, TEXTOID};
	bool		isnull;

	invoice_seq_plan(&head_plan,
					 "SELECT l.invoice_no, l.link FROM invoice_seq.ledger_link l"
					 " WHERE l.series_id OPERATOR(pg_catalog.=) $1"
					 "   AND l.period OPERATOR(pg_catalog.=) $2"
					 " ORDER BY l.invoice_no DESC LIMIT 1",
					 2, types);
	/* not read-only: a sealer must see the links it just inserted */
	invoice_seq_execute(head_plan, args, NULL, false, 1);
	head->sealed = (SPI_processed == 1);
	if (!head->sealed)
		return;
	head->invoice_no = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull));
	(void) chain_link_from_datum(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 2, &isnull),
						   &head->link);
}

/* Take the seal lock of a chain; false if busy and !wait. */
static void
seal_lock_tag(LOCKTAG *tag, int32 series_id, const char *period)
{
	uint32		hash = DatumGetUInt32(hash_any((const unsigned char *) period,
											   strlen(period)));

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) series_id, hash,
						 ISEQ_SEAL_LOCK_CLASS);
}

static bool
seal_lock(int32 series_id, const char *period, bool wait)
{
	LOCKTAG		tag;

	seal_lock_tag(&tag, series_id, period);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

static void
seal_unlock(int32 series_id, const char *period)
{
	LOCKTAG		tag;

	seal_lock_tag(&tag, series_id, period);
	LockRelease(&tag, ExclusiveLock, false);
}

/* Record the links of some entries, in one statement. */
static void
insert_links(int32 series_id, const char *period, int n, Datum *numbers,
			 Datum *links)
{
	Datum		args[4];
	Oid			types[4] = {INT4OID, TEXTOID, INT8ARRAYOID, BYTEAARRAYOID};

	if (n == 0)
		return;
	args[0] = Int32GetDatum(series_id);
	args[1] = CStringGetTextDatum(period);
	args[2] = PointerGetDatum(construct_array(numbers, n, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(links, n, BYTEAOID, -1, false,
											  TYPALIGN_INT));
	invoice_seq_plan(&insert_plan,
					 "INSERT INTO invoice_seq.ledger_link"
					 " (series_id, period, invoice_no, link, sealed_at)"
					 " SELECT $1, $2, u.n, u.l, pg_catalog.now()"
					 " FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(n, l)",
					 4, types);
	invoice_seq_execute(insert_plan, args, NULL, false, 0);
}

/* A link as a bytea datum. */
static Datum
link_datum(const ChainLink *link)
{
	bytea	   *b = palloc(VARHDRSZ + sizeof(link->hash));

	SET_VARSIZE(b, VARHDRSZ + sizeof(link->hash));
	memcpy(VARDATA(b), link->hash, sizeof(link->hash));
	return PointerGetDatum(b);
}

/* Up to max entries of a period from a number on, in number order. */
static void
read_entries(int32 series_id, const char *period, int64 from, int max)
{
	Datum		args[4];
	Oid			types[4] = {INT4OID, TEXTOID, INT8OID, INT8OID};

	args[0] = Int32GetDatum(series_id);
	args[1] = CStringGetTextDatum(period);
	args[2] = Int64GetDatum(from);
	args[3] = Int64GetDatum(max);
	invoice_seq_plan(&entries_plan,
					 "SELECT " CHAIN_ENTRY_COLUMNS
					 " FROM invoice_seq.ledger_entry e"
					 " WHERE e.series_id OPERATOR(pg_catalog.=) $1"
					 "   AND e.period OPERATOR(pg_catalog.=) $2"
					 "   AND e.invoice_no OPERATOR(pg_catalog.>=) $3"
					 " ORDER BY e.invoice_no LIMIT $4",
					 4, types);
	invoice_seq_execute(entries_plan, args, NULL, false, 0);
}

/*
 * Link the entries of a chain above its head, in number order, while each
 * is the next number and final; at most max_links.  Returns how many were
 * linked; *busy says whether the chain's seal lock was busy (only if
 * !wait), and then nothing was.
 */
static int
seal_chain(const InvoiceSeries *series, const char *period, int max_links,
		   bool wait, bool *busy)
{
	ChainHead	head;
	ChainLink	link;
	ChainLink  *prev;
	SPITupleTable *rows;
	uint64		nrows;
	int64		next;
	StringInfoData buf;
	Datum	   *numbers;
	Datum	   *links;
	int			sealed = 0;

	*busy = !seal_lock(series->id, period, wait);
	if (*busy)
		return 0;
	chain_head(series->id, period, &head);
	next = head.sealed ? head.invoice_no + 1 : series->start_at;
	prev = head.sealed ? &head.link : NULL;

	read_entries(series->id, period, next, max_links);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	numbers = palloc(sizeof(Datum) * Max(nrows, 1));
	links = palloc(sizeof(Datum) * Max(nrows, 1));
	initStringInfo(&buf);
	for (uint64 i = 0; i < nrows; i++)
	{
		ChainEntry	entry;

		chain_entry_from_row(rows->vals[i], rows->tupdesc, 1, &entry);
		if (entry.invoice_no != next || strcmp(entry.status, "reserved") == 0)
			break;
		chain_encode(&buf, series->name, period, &entry, prev);
		chain_hash(&buf, &link);
		numbers[sealed] = Int64GetDatum(entry.invoice_no);
		links[sealed] = link_datum(&link);
		prev = &link;
		next++;
		sealed++;
	}
	insert_links(series->id, period, sealed, numbers, links);
	SPI_freetuptable(rows);
	/* nothing linked: nothing to keep the lock for */
	if (sealed == 0)
		seal_unlock(series->id, period);
	return sealed;
}

/* seal_chain(), for callers that need not know why nothing was linked. */
int
chain_seal(const InvoiceSeries *series, const char *period, int max_links,
		   bool wait)
{
	bool		busy;

	return seal_chain(series, period, max_links, wait, &busy);
}

/*
 * Seal a chain to its end, waiting for its seal lock: for chain_head(),
 * export_series() and close_period(), whose answer must cover every final
 * entry.
 */
void
chain_seal_to_end(const InvoiceSeries *series, const char *period)
{
	while (chain_seal(series, period, 10000, true) > 0)
		;
}

/* Where chain_seal_database() goes on: the last chain it looked at. */
static int32 resume_series = -1;
static char resume_period[ISEQ_MAX_PERIOD + 1] = "";

/*
 * Seal chains of this database that have something to seal, at most
 * max_links links per chain, skipping chains another process is sealing.
 * The (series, period) pairs are found with one index probe each, going
 * on from where the last call stopped.  A call looks at ISEQ_SEAL_LIST
 * chains at most, and seals max_chains of them at most, so that its
 * transaction holds a bounded number of seal locks; *more says whether
 * chains are left for another call.  Returns how many links were made.
 */
int
chain_seal_database(int max_links, int max_chains, bool *more)
{
	Datum		args[2] = {Int32GetDatum(resume_series), CStringGetTextDatum(resume_period)};
	Oid			types[2] = {INT4OID, TEXTOID};
	SPITupleTable *pairs;
	uint64		npairs;
	uint64		i;
	int			sealed = 0;
	int			chains = 0;

	invoice_seq_plan(&pairs_plan,
					 "WITH RECURSIVE p(series_id, period) AS ("
					 "  (SELECT e.series_id, e.period FROM invoice_seq.ledger_entry e"
					 "   WHERE (e.series_id, e.period) OPERATOR(pg_catalog.>) ($1, $2)"
					 "   ORDER BY 1, 2 LIMIT 1)"
					 "  UNION ALL"
					 "  SELECT n.series_id, n.period FROM p, LATERAL"
					 "   (SELECT e.series_id, e.period FROM invoice_seq.ledger_entry e"
					 "    WHERE (e.series_id, e.period) OPERATOR(pg_catalog.>) (p.series_id, p.period)"
					 "    ORDER BY 1, 2 LIMIT 1) n)"
					 " SELECT series_id, period FROM p LIMIT " CppAsString2(ISEQ_SEAL_LIST),
					 2, types);
	invoice_seq_spi_check(invoice_seq_execute(pairs_plan, args, NULL, true, 0),
						  SPI_OK_SELECT, "listing the ledger's chains");
	pairs = SPI_tuptable;
	npairs = SPI_processed;
	for (i = 0; i < npairs && chains < max_chains; i++)
	{
		bool		isnull;
		InvoiceSeries series;
		int32		id = DatumGetInt32(SPI_getbinval(pairs->vals[i], pairs->tupdesc,
													 1, &isnull));
		char	   *period = SPI_getvalue(pairs->vals[i], pairs->tupdesc, 2);
		int			n = 0;

		if (series_lookup_by_id(id, &series))
			n = chain_seal(&series, period, max_links, false);
		sealed += n;
		chains += (n > 0);
		resume_series = id;
		strlcpy(resume_period, period, sizeof(resume_period));
	}
	*more = (i < npairs || npairs == ISEQ_SEAL_LIST);
	if (!*more)
	{
		resume_series = -1;
		resume_period[0] = '\0';
	}
	SPI_freetuptable(pairs);
	return sealed;
}

/*
 * Seal the chains that committed final entries since they were last sealed
 * (seal_due.c), at most max_chains of them and max_links links per chain.
 * A chain whose seal lock another process holds, or that has more than
 * max_links to link, goes back on the list; so does every chain of the
 * pass when an error ends it.  *more says whether to pass again at once.
 * Returns how many links were made.
 */
int
chain_seal_listed(int max_links, int max_chains, bool *more)
{
	SealDueKey *keys = palloc(sizeof(SealDueKey) * max_chains);
	int			nkeys = seal_due_take(keys, max_chains);
	int			sealed = 0;

	*more = (nkeys == max_chains);
	PG_TRY();
	{
		for (int done = 0; done < nkeys; done++)
		{
			InvoiceSeries series;
			bool		busy = false;
			int			n = 0;

			if (series_lookup_by_id(keys[done].series_id, &series))
				n = seal_chain(&series, keys[done].period, max_links, false, &busy);
			sealed += n;
			if (busy || n == max_links)
				seal_due_put_back(&keys[done]);
			*more |= (n == max_links);
		}
	}
	PG_CATCH();
	{
		/* every link of the pass rolls back with it */
		for (int i = 0; i < nkeys; i++)
			seal_due_put_back(&keys[i]);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pfree(keys);
	return sealed;
}
