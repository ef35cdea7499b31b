/*-------------------------------------------------------------------------
 *
 * util.c
 *		Helpers every module uses: acting as the extension's owner, running
 *		statements on its tables, the clock, and entry statuses.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "catalog/pg_namespace.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "util.h"

/*
 * The version of the extension's SQL objects this library works with: the
 * control file's default_version.  Raise both with every schema change.
 */
#define ISEQ_SCHEMA_VERSION "1.5"

/*
 * The role that owns the extension's objects: the owner of its schema, which
 * CREATE EXTENSION created.  The API functions check the caller's rights and
 * then read and write the extension's tables as this role, so that callers
 * need no privileges on the tables themselves.
 */
Oid
invoice_seq_owner(void)
{
	Oid			nspid = get_namespace_oid("invoice_seq", true);
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"invoice_seq\" does not exist"),
				 errhint("Run CREATE EXTENSION invoice_seq.")));

	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for namespace %u", nspid);
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);

	return owner;
}

/*
 * A library newer than the database's objects (installed, server restarted,
 * ALTER EXTENSION UPDATE not yet run) would fail on missing columns; say
 * what to do instead.  Checked until it first succeeds in a backend.
 */
void
invoice_seq_check_schema_version(void)
{
	static bool checked = false;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	if (checked)
		return;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("invoice_seq"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		datum = heap_getattr(tuple, Anum_pg_extension_extversion,
										 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(datum));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (version != NULL && strcmp(version, ISEQ_SCHEMA_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invoice_seq library version %s cannot use extension objects of version %s",
						ISEQ_SCHEMA_VERSION, version),
				 errhint("Run ALTER EXTENSION invoice_seq UPDATE.")));
	checked = (version != NULL);
}

/*
 * How deep this backend is in utility commands (the ProcessUtility hook of
 * ledger_am.c counts them), and the depth at which a CREATE or ALTER
 * EXTENSION invoice_seq runs, or -1.
 */
static int	utility_depth = 0;
static int	script_depth = -1;

void
invoice_seq_utility_enter(bool own_extension)
{
	utility_depth++;
	if (own_extension && script_depth < 0)
		script_depth = utility_depth;
}

void
invoice_seq_utility_exit(bool own_extension)
{
	if (own_extension && script_depth == utility_depth)
		script_depth = -1;
	utility_depth--;
}

/*
 * Is this one of invoice_seq's own scripts (CREATE or ALTER EXTENSION
 * invoice_seq) at work?  They may change what nothing else may.  Its
 * utility commands run one level below the CREATE or ALTER EXTENSION, its
 * other statements at that level; anything deeper, such as an event
 * trigger firing on a command of the script, is not the script.
 */
bool
invoice_seq_running_own_script(bool utility)
{
	/*
	 * A CREATE EXTENSION the hook did not see loaded this library: it is
	 * at the depth where counting began.
	 */
	int			base = script_depth >= 0 ? script_depth : 0;

	return creating_extension &&
		CurrentExtensionObject == get_extension_oid("invoice_seq", true) &&
		utility_depth == base + (utility ? 1 : 0);
}

/*
 * Switch to the extension's owner, saving the caller's identity so that the
 * caller can switch back with SetUserIdAndSecContext().  An error aborts the
 * (sub)transaction, which restores the identity by itself.
 */
void
invoice_seq_become_owner(Oid *save_userid, int *save_sec_context)
{
	Oid			owner;

	invoice_seq_check_schema_version();
	owner = invoice_seq_owner();

	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(owner,
						   *save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

/* Prepare a statement on the extension's tables once per process. */
SPIPlanPtr
invoice_seq_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			invoice_seq_spi_check(SPI_result, SPI_OK_SELECT, "preparing a statement");
		SPI_keepplan(plan);
		*cache = plan;
	}
	return *cache;
}

/*
 * Execute a prepared statement on the extension's tables, on behalf of a
 * caller.  Under READ COMMITTED every statement takes a fresh snapshot.  In
 * REPEATABLE READ and SERIALIZABLE the transaction snapshot may predate
 * numbers the sequencer has committed since (the caller's own reservation,
 * even), so we use the latest snapshot, as the foreign-key checks do.
 * Conflicts still follow the caller's isolation level: a concurrent change
 * of the same row is a serialization failure there.
 */
int
invoice_seq_execute(SPIPlanPtr plan, Datum *values, const char *nulls,
					bool read_only, long tcount)
{
	if (IsolationUsesXactSnapshot())
		return SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(),
									InvalidSnapshot, read_only, true, tcount);
	return SPI_execute_plan(plan, values, nulls, read_only, tcount);
}

/* Raise an internal error unless an SPI call returned what we expected. */
void
invoice_seq_spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("invoice_seq: %s failed: %s",
						what, SPI_result_code_string(rc))));
}

/*
 * The time invoice_seq.test_clock sets for this session, or 0 if it is not
 * set.  Only superusers can set it; tests use it to put numbers on given
 * days.
 */
TimestampTz
invoice_seq_test_now(void)
{
	if (invoice_seq_test_clock == NULL || invoice_seq_test_clock[0] == '\0')
		return 0;
	return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
												   CStringGetDatum(invoice_seq_test_clock),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1)));
}

/* The time at which this session confirms or voids a number. */
TimestampTz
invoice_seq_now(void)
{
	TimestampTz now = invoice_seq_test_now();

	return now != 0 ? now : GetCurrentTimestamp();
}

/* The blessed tuple descriptor of a function returning a composite row. */
TupleDesc
invoice_seq_result_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	desc;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("function returning record called in context that cannot accept type record")));
	return BlessTupleDesc(desc);
}

/*
 * invoice_seq.ledger_entry's OID, kept from one call to the next: every
 * number asks for it several times.  A relcache invalidation of the table
 * (DROP EXTENSION, or the rollback of the CREATE EXTENSION that made it)
 * or of every table forgets it.
 */
static Oid	ledger_relid = InvalidOid;

static void
forget_ledger_relid(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == ledger_relid)
		ledger_relid = InvalidOid;
}

/* The OID of invoice_seq.ledger_entry, or InvalidOid if there is none. */
Oid
invoice_seq_ledger_relid(void)
{
	static bool callback_registered = false;
	Oid			nspid;

	if (OidIsValid(ledger_relid))
		return ledger_relid;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_ledger_relid, (Datum) 0);
		callback_registered = true;
	}
	nspid = get_namespace_oid("invoice_seq", true);
	ledger_relid = OidIsValid(nspid) ? get_relname_relid("ledger_entry", nspid) :
		InvalidOid;
	return ledger_relid;
}

static const char *const entry_status_names[] = {
	[ENTRY_RESERVED] = "reserved",
	[ENTRY_ISSUED] = "issued",
	[ENTRY_VOIDED] = "voided"
};

const char *
entry_status_name(EntryStatus status)
{
	return entry_status_names[status];
}

EntryStatus
parse_entry_status(const char *status)
{
	int			i;

	for (i = 0; i < (int) lengthof(entry_status_names); i++)
		if (strcmp(status, entry_status_names[i]) == 0)
			return (EntryStatus) i;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invoice_seq: unknown ledger entry status \"%s\"", status)));
	return ENTRY_RESERVED;		/* keep compiler quiet */
}

/* An equality scan key on a text column of ours (COLLATE "C"). */
void
invoice_seq_text_key(ScanKey key, AttrNumber attno, const char *value)
{
	ScanKeyEntryInitialize(key, 0, attno, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(value));
}

/*
 * Has close_period() closed this period of the series?  One probe of
 * period_close's primary key, seeing what a query would see: after a
 * command counter increment, with a fresh snapshot in READ COMMITTED.
 */
bool
invoice_seq_period_closed(int32 series_id, const char *period)
{
	Oid			nspid = get_namespace_oid("invoice_seq", false);
	Relation	rel = table_open(get_relname_relid("period_close", nspid), AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	bool		closed;

	ScanKeyInit(&keys[0], CLOSE_ATT_SERIES_ID, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(series_id));
	invoice_seq_text_key(&keys[1], CLOSE_ATT_PERIOD, period);
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	scan = systable_beginscan(rel, get_relname_relid("period_close_pkey", nspid), true,
							  GetActiveSnapshot(), 2, keys);
	closed = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	PopActiveSnapshot();
	table_close(rel, AccessShareLock);
	return closed;
}

/* "invoice series "INV"", or "period "2026" of invoice series "INV"". */
char *
period_label(const char *series, const char *period)
{
	if (period[0] == '\0')
		return psprintf("invoice series \"%s\"", series);
	return psprintf("period \"%s\" of invoice series \"%s\"", period, series);
}
