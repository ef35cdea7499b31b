/*-------------------------------------------------------------------------
 *
 * record_guard.c
 *		The tables of the legal record, kept whole against DDL, and the
 *		archive that alone lets them be dropped.
 *
 * The legal record is every table of schema invoice_seq that uses the
 * invoice_ledger access method: ledger_entry, ledger_link, period_close,
 * and any later one.  invoice_ledger refuses to delete, change or truncate
 * their rows (ledger_am.c).  The ProcessUtility hook of ledger_am.c asks
 * record_guard_utility() too, which refuses, to superusers as well, the
 * DDL that would remove, rename, move or rewrite those tables:
 *
 *	ALTER EXTENSION invoice_seq DROP	a table of the record, or the access
 *										method;
 *	DROP TABLE, DROP INDEX				a table of the record or one of its
 *										indexes, with or without CASCADE;
 *	RENAME, SET SCHEMA					of a table or its columns, and
 *										ALTER SCHEMA invoice_seq RENAME;
 *	ALTER TABLE							but the subcommands that change neither
 *										rows nor columns (statistics, storage
 *										options, owner, triggers on or off);
 *	CREATE RULE, TRIGGER, POLICY		which could rewrite, discard or hide
 *										rows, as row security could;
 *	INHERITS, INHERIT					another table whose rows would read as
 *										the record's.
 *
 * invoice_seq's own scripts (CREATE and ALTER EXTENSION) and pg_upgrade's
 * restore of the schema (binary upgrade) are exempt.
 *
 * DROP EXTENSION invoice_seq and DROP SCHEMA invoice_seq drop the record
 * with everything else.  While the ledger holds entries, they are refused
 * unless invoice_seq.ledger_archive names a permanent table outside the
 * schema whose rows are those of archive_record(), compared by content:
 * every series, entry, link and closing, and the head of each chain.  The
 * tables are locked against writers first, and the comparison reads what
 * is committed then, so nothing added in between is dropped unarchived.
 * The hook then permits the drops for that command only; the object access
 * hook refuses every other drop of a table of the record that has rows
 * (DROP OWNED, say).
 *
 * The rows' JSON is rendered with fixed settings (TimeZone UTC,
 * IntervalStyle postgres, bytea_output hex), so that an archive made in
 * one session compares equal in another.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "chain.h"
#include "invoice_seq.h"
#include "pg_version_compat.h"
#include "record_guard.h"
#include "series.h"
#include "util.h"

PG_FUNCTION_INFO_V1(invoice_seq_archive_record);

/* What DDL on a table of the record would do; each is refused. */
typedef enum RecordDdl
{
	RECORD_DDL_UNLINK,			/* ALTER EXTENSION invoice_seq DROP TABLE */
	RECORD_DDL_DROP,
	RECORD_DDL_DROP_INDEX,
	RECORD_DDL_RENAME,
	RECORD_DDL_SET_SCHEMA,
	RECORD_DDL_ALTER,
	RECORD_DDL_RULE,
	RECORD_DDL_TRIGGER,
	RECORD_DDL_POLICY,
	RECORD_DDL_INHERIT,
	RECORD_DDL_ATTACH
} RecordDdl;

/* Set while DROP EXTENSION or DROP SCHEMA runs with a verified archive. */
static bool drop_permitted = false;

/*
 * The transient table of a VACUUM FULL or CLUSTER of a table of the record:
 * after the swap it holds the old copy of the rows, and is dropped.
 */
static Oid	rewritten = InvalidOid;
static LocalTransactionId rewritten_lxid = InvalidLocalTransactionId;

/* That archive, kept from being dropped in the same transaction. */
static Oid	archived = InvalidOid;
static LocalTransactionId archived_lxid = InvalidLocalTransactionId;

#define RECORD_DETAIL \
	"It holds the legal record of invoice numbers, which only invoice_seq's own functions and scripts change."
#define ARCHIVE_HINT \
	"To drop the record with the extension, archive it first: CREATE TABLE record_archive AS SELECT * FROM invoice_seq.archive_record(); then SET invoice_seq.ledger_archive = 'record_archive' and run DROP EXTENSION invoice_seq."

/*
 * The record, a row per series, entry, link, closing and chain head: what
 * archive_record() returns, and what an archive must hold.
 */
#define RECORD_SERIES_JOIN(alias) \
	" LEFT JOIN invoice_seq.series_def s ON s.id OPERATOR(pg_catalog.=) " alias ".series_id"
#define RECORD_QUERY \
	"SELECT 'series'::pg_catalog.text AS kind, s.name AS series," \
	" NULL::pg_catalog.text AS period, NULL::pg_catalog.int8 AS invoice_no," \
	" pg_catalog.to_jsonb(s.*) AS item FROM invoice_seq.series_def s" \
	" UNION ALL SELECT 'entry', s.name, e.period, e.invoice_no, pg_catalog.to_jsonb(e.*)" \
	" FROM invoice_seq.ledger_entry e" RECORD_SERIES_JOIN("e") \
	" UNION ALL SELECT 'link', s.name, l.period, l.invoice_no, pg_catalog.to_jsonb(l.*)" \
	" FROM invoice_seq.ledger_link l" RECORD_SERIES_JOIN("l") \
	" UNION ALL SELECT 'closing', s.name, c.period, c.last_no, pg_catalog.to_jsonb(c.*)" \
	" FROM invoice_seq.period_close c" RECORD_SERIES_JOIN("c") \
	" UNION ALL SELECT 'head', s.name, h.period, h.invoice_no," \
	" pg_catalog.jsonb_build_object('invoice_no', h.invoice_no," \
	"  'link', pg_catalog.encode(h.link, 'hex'))" \
	" FROM (SELECT DISTINCT ON (series_id, period) series_id, period, invoice_no, link" \
	"  FROM invoice_seq.ledger_link ORDER BY series_id, period, invoice_no DESC) h" \
	RECORD_SERIES_JOIN("h")

/* The record's columns, each in one collation, for comparing sets of rows. */
#define RECORD_COLUMNS \
	"kind COLLATE \"C\", series COLLATE \"C\", period COLLATE \"C\", invoice_no, item"

static const struct
{
	const char *name;
	Oid			type;
} record_columns[] = {
	{"kind", TEXTOID},
	{"series", TEXTOID},
	{"period", TEXTOID},
	{"invoice_no", INT8OID},
	{"item", JSONBOID},
};

static bool
exempt(void)
{
	return IsBinaryUpgrade || invoice_seq_running_own_script(true);
}

/* Is relid a table of the legal record? */
bool
record_guard_is_record_table(Oid relid)
{
	Oid			nspid = get_namespace_oid("invoice_seq", true);
	Oid			am = get_table_am_oid("invoice_ledger", true);
	HeapTuple	tuple;
	Form_pg_class form;
	bool		result;

	if (!OidIsValid(relid) || !OidIsValid(nspid) || !OidIsValid(am))
		return false;
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		return false;
	form = (Form_pg_class) GETSTRUCT(tuple);
	result = form->relnamespace == nspid && form->relam == am &&
		form->relkind == RELKIND_RELATION;
	ReleaseSysCache(tuple);
	return result;
}

static int
errmsg_refused(RecordDdl ddl, const char *name)
{
	switch (ddl)
	{
		case RECORD_DDL_UNLINK:
			return errmsg("cannot remove table \"%s\" from extension invoice_seq", name);
		case RECORD_DDL_DROP:
			return errmsg("cannot drop table \"%s\"", name);
		case RECORD_DDL_DROP_INDEX:
			return errmsg("cannot drop a unique index of table \"%s\"", name);
		case RECORD_DDL_RENAME:
			return errmsg("cannot rename table \"%s\" or its columns", name);
		case RECORD_DDL_SET_SCHEMA:
			return errmsg("cannot move table \"%s\" to another schema", name);
		case RECORD_DDL_ALTER:
			return errmsg("cannot alter table \"%s\"", name);
		case RECORD_DDL_RULE:
			return errmsg("cannot create a rule on table \"%s\"", name);
		case RECORD_DDL_TRIGGER:
			return errmsg("cannot create a trigger on table \"%s\"", name);
		case RECORD_DDL_POLICY:
			return errmsg("cannot create a policy on table \"%s\"", name);
		case RECORD_DDL_INHERIT:
			return errmsg("cannot inherit from table \"%s\"", name);
		case RECORD_DDL_ATTACH:
			return errmsg("cannot attach table \"%s\" as a partition", name);
	}
	return 0;					/* keep compiler quiet */
}

static pg_noreturn void
refuse(RecordDdl ddl, Oid relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg_refused(ddl, get_rel_name(relid)),
			 errdetail(RECORD_DETAIL),
			 (ddl == RECORD_DDL_DROP || ddl == RECORD_DDL_UNLINK) ?
			 errhint(ARCHIVE_HINT) : 0));
}

/* Refuse ddl if rv names a table of the record. */
static void
guard_relation(RangeVar *rv, RecordDdl ddl)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	if (record_guard_is_record_table(relid))
		refuse(ddl, relid);
}

/*
 * ALTER EXTENSION invoice_seq DROP: of a table of the record, with its own
 * message; of anything else (the access method, its handler, a function),
 * refused too: once out of the extension, an object can be replaced or
 * dropped on its own.
 */
static void
guard_extension_contents(AlterExtensionContentsStmt *stmt)
{
	if (stmt->action >= 0 || strcmp(stmt->extname, "invoice_seq") != 0)
		return;
	if (stmt->objtype == OBJECT_TABLE)
		guard_relation(makeRangeVarFromNameList(castNode(List, stmt->object)),
					   RECORD_DDL_UNLINK);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot remove objects from extension invoice_seq"),
			 errdetail("Its objects, the invoice_ledger access method and its handler among them, change only with its own scripts.")));
}

/*
 * CREATE OR REPLACE FUNCTION and ALTER FUNCTION of a function of schema
 * invoice_seq: replacing invoice_ledger's handler with heap's would turn
 * the record into a plain table.
 */
static void
guard_function(List *funcname, ObjectWithArgs *func)
{
	Oid			nspid = get_namespace_oid("invoice_seq", true);
	char	   *name;
	Oid			target;

	if (!OidIsValid(nspid))
		return;
	if (func != NULL)
	{
		Oid			funcid = LookupFuncWithArgs(OBJECT_ROUTINE, func, true);

		target = OidIsValid(funcid) ? get_func_namespace(funcid) : InvalidOid;
		name = NameListToString(func->objname);
	}
	else
	{
		target = QualifiedNameGetCreationNamespace(funcname, &name);
	}
	if (target == nspid)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot replace or alter function \"%s\" of schema invoice_seq", name),
				 errdetail("Its objects, the invoice_ledger access method and its handler among them, change only with its own scripts.")));
}

static void
guard_rename(RenameStmt *stmt)
{
	if (stmt->renameType == OBJECT_SCHEMA)
	{
		if (strcmp(stmt->subname, "invoice_seq") == 0 &&
			OidIsValid(get_extension_oid("invoice_seq", true)))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cannot rename schema \"invoice_seq\""),
					 errdetail("invoice_seq finds its legal record in the schema of that name.")));
		return;
	}
	if (stmt->renameType == OBJECT_FUNCTION || stmt->renameType == OBJECT_ROUTINE ||
		stmt->renameType == OBJECT_PROCEDURE)
		guard_function(NIL, castNode(ObjectWithArgs, stmt->object));
	else if (stmt->relation != NULL)
		guard_relation(stmt->relation, RECORD_DDL_RENAME);
}

static void
guard_set_schema(AlterObjectSchemaStmt *stmt)
{
	if (stmt->objectType == OBJECT_FUNCTION || stmt->objectType == OBJECT_ROUTINE ||
		stmt->objectType == OBJECT_PROCEDURE)
		guard_function(NIL, castNode(ObjectWithArgs, stmt->object));
	else if (stmt->relation != NULL)
		guard_relation(stmt->relation, RECORD_DDL_SET_SCHEMA);
}

/* Does an ALTER TABLE subcommand leave every row and column as it is? */
static bool
changes_no_rows(AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_SetStatistics:
		case AT_SetOptions:
		case AT_ResetOptions:
		case AT_SetStorage:
		case AT_SetCompression:
		case AT_ClusterOn:
		case AT_DropCluster:
		case AT_SetRelOptions:
		case AT_ResetRelOptions:
		case AT_ReplaceRelOptions:
		case AT_SetTableSpace:
		case AT_ChangeOwner:
		case AT_ReplicaIdentity:
		case AT_ValidateConstraint:
		case AT_EnableTrig:
		case AT_EnableAlwaysTrig:
		case AT_EnableReplicaTrig:
		case AT_DisableTrig:
		case AT_EnableTrigAll:
		case AT_DisableTrigAll:
		case AT_EnableTrigUser:
		case AT_DisableTrigUser:
		case AT_DisableRowSecurity:
		case AT_NoForceRowSecurity:
			return true;
		case AT_SetAccessMethod:
			return cmd->name != NULL && strcmp(cmd->name, "invoice_ledger") == 0;
		default:
			return false;
	}
}

/*
 * ALTER TABLE of the record, but subcommands that change no rows; and
 * INHERIT of a table of the record by another table, whose rows would then
 * be read as the record's.
 */
static void
guard_alter_table(AlterTableStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	bool		record = record_guard_is_record_table(relid);
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (record && !changes_no_rows(cmd))
			refuse(RECORD_DDL_ALTER, relid);
		if (cmd->subtype == AT_AddInherit)
			guard_relation(castNode(RangeVar, cmd->def), RECORD_DDL_INHERIT);
		if (cmd->subtype == AT_AttachPartition)
			guard_relation(castNode(PartitionCmd, cmd->def)->name, RECORD_DDL_ATTACH);
	}
}

/*
 * TRUNCATE of the series definitions: the record's entries would lose
 * their series, and a series made again under the same name would number
 * from its start.  (DELETE of them is not refused: series_def is a heap
 * table; drop_series() refuses a series that handed out numbers.)
 */
static void
guard_truncate_series(TruncateStmt *stmt)
{
	Oid			nspid = get_namespace_oid("invoice_seq", true);
	Oid			series = OidIsValid(nspid) ? get_relname_relid("series_def", nspid) : InvalidOid;
	ListCell   *lc;

	foreach(lc, stmt->relations)
	{
		if (OidIsValid(series) &&
			RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true) == series)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cannot truncate table \"series_def\""),
					 errdetail(RECORD_DETAIL)));
	}
}

/* CREATE TABLE ... INHERITS (a table of the record) */
static void
guard_create_table(CreateStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->inhRelations)
		guard_relation(lfirst_node(RangeVar, lc), RECORD_DDL_INHERIT);
}

/* Does the index keep its columns unique? */
static bool
index_is_unique(Oid index)
{
	HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(index));
	bool		result;

	if (!HeapTupleIsValid(tuple))
		return false;
	result = ((Form_pg_index) GETSTRUCT(tuple))->indisunique;
	ReleaseSysCache(tuple);
	return result;
}

/*
 * Run a query that returns one bigint, reading what is committed now (the
 * statement's snapshot may predate the locks taken since).  The caller is
 * connected to SPI.
 */
static int64
latest_count(const char *sql, const char *what)
{
	SPIPlanPtr	plan = SPI_prepare(sql, 0, NULL);
	bool		isnull;
	int			rc;

	if (plan == NULL)
		invoice_seq_spi_check(SPI_result, SPI_OK_SELECT, what);
	rc = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 1);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, what);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Lock every table of the record, and the series, against writers until
 * the end of the transaction: nothing may be added between the archive's
 * check and the drop.  Returns false if there is no ledger.
 */
static bool
lock_record(void)
{
	Oid			nspid = get_namespace_oid("invoice_seq", true);
	Oid			am = get_table_am_oid("invoice_ledger", true);
	Datum		args[2] = {ObjectIdGetDatum(nspid), ObjectIdGetDatum(am)};
	Oid			types[2] = {OIDOID, OIDOID};
	int			rc;

	if (!OidIsValid(nspid) || !OidIsValid(get_relname_relid("ledger_entry", nspid)))
		return false;
	LockRelationOid(get_relname_relid("series_def", nspid), ExclusiveLock);
	rc = SPI_execute_with_args("SELECT c.oid FROM pg_catalog.pg_class c"
							   " WHERE c.relnamespace OPERATOR(pg_catalog.=) $1"
							   "   AND c.relam OPERATOR(pg_catalog.=) $2"
							   " ORDER BY 1", 2, types, args, NULL, true, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "listing the tables of the record");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		LockRelationOid(DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1, &isnull)),
						ExclusiveLock);
	}
	return true;
}

static pg_noreturn void
refuse_record_drop(int64 entries, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot drop the invoice_seq ledger: it holds " INT64_FORMAT " numbers that were handed out",
					entries),
			 errdetail("%s", detail),
			 errhint(ARCHIVE_HINT)));
}

/*
 * The table invoice_seq.ledger_archive names, if it can be an archive: a
 * permanent table outside schema invoice_seq, with the record's columns.
 */
static Oid
archive_table(int64 entries)
{
	const char *setting = invoice_seq_ledger_archive;
	Oid			archive;
	size_t		i;

	if (setting == NULL || setting[0] == '\0')
		refuse_record_drop(entries,
						   "Dropping the extension or its schema would drop the legal record of every invoice number.");
	archive = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(setting, NULL)),
							   AccessShareLock, true);
	if (!OidIsValid(archive))
		refuse_record_drop(entries,
						   psprintf("invoice_seq.ledger_archive names \"%s\", which does not exist.", setting));
	if (get_rel_relkind(archive) != RELKIND_RELATION ||
		get_rel_persistence(archive) != RELPERSISTENCE_PERMANENT ||
		get_rel_namespace(archive) == get_namespace_oid("invoice_seq", true) ||
		has_subclass(archive))
		refuse_record_drop(entries,
						   psprintf("The archive \"%s\" must be a permanent table outside schema invoice_seq, with no child tables.", setting));
	for (i = 0; i < lengthof(record_columns); i++)
	{
		AttrNumber	attnum = get_attnum(archive, record_columns[i].name);

		if (attnum == InvalidAttrNumber ||
			get_atttype(archive, attnum) != record_columns[i].type)
			refuse_record_drop(entries,
							   psprintf("The archive \"%s\" has no column \"%s\" of type %s, as invoice_seq.archive_record() returns.",
										setting, record_columns[i].name,
										format_type_be(record_columns[i].type)));
	}
	return archive;
}

/*
 * Pin the settings that the record's JSON depends on; the caller restores
 * them with AtEOXact_GUC(true, nestlevel), and an error does so anyway.
 */
static int
pin_rendering(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("IntervalStyle", "postgres", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("bytea_output", "hex", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* The rows in which the archive and the record differ, either way. */
static int64
archive_differences(Oid archive)
{
	/* names from the catalog, quoted: no SQL is built from input */
	const char *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(archive)),
												  get_rel_name(archive));
	int			nestlevel = pin_rendering();
	int64		differences;

	differences = latest_count(psprintf("SELECT pg_catalog.count(*) FROM ("
										"(SELECT " RECORD_COLUMNS " FROM (" RECORD_QUERY ") r"
										" EXCEPT ALL SELECT " RECORD_COLUMNS " FROM ONLY %s)"
										" UNION ALL "
										"(SELECT " RECORD_COLUMNS " FROM ONLY %s"
										" EXCEPT ALL SELECT " RECORD_COLUMNS " FROM (" RECORD_QUERY ") r)"
										") d", name, name),
							   "comparing the archive with the record");
	AtEOXact_GUC(true, nestlevel);
	return differences;
}

/* Refuse to drop the record unless the archive holds every row of it. */
static void
check_archive(void)
{
	int64		entries = 0;
	int64		differences = 0;

	SPI_connect();
	if (lock_record())
		entries = latest_count("SELECT pg_catalog.count(*) FROM invoice_seq.ledger_entry",
							   "counting ledger entries");
	if (entries > 0)
	{
		archived = archive_table(entries);
		archived_lxid = MyLocalTransactionId;
		differences = archive_differences(archived);
	}
	SPI_finish();
	if (differences > 0)
		refuse_record_drop(entries,
						   psprintf("Rows that differ between the archive \"%s\" and invoice_seq.archive_record(): " INT64_FORMAT ".",
									invoice_seq_ledger_archive, differences));
}

/*
 * DROP TABLE and DROP INDEX of the record are refused; DROP EXTENSION and
 * DROP SCHEMA invoice_seq need the archive.  Returns true for those.
 */
static bool
guard_drop(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Node	   *object = lfirst(lc);

		if (stmt->removeType == OBJECT_TABLE)
			guard_relation(makeRangeVarFromNameList(castNode(List, object)),
						   RECORD_DDL_DROP);
		else if (stmt->removeType == OBJECT_INDEX)
		{
			Oid			index = RangeVarGetRelid(makeRangeVarFromNameList(castNode(List, object)),
												 NoLock, true);
			Oid			table = OidIsValid(index) ? IndexGetRelation(index, true) : InvalidOid;

			/* a unique index keeps numbers and keys unique; others only speed */
			if (record_guard_is_record_table(table) && index_is_unique(index))
				refuse(RECORD_DDL_DROP_INDEX, table);
		}
		else if ((stmt->removeType == OBJECT_EXTENSION ||
				  stmt->removeType == OBJECT_SCHEMA) &&
				 strcmp(strVal(object), "invoice_seq") == 0)
		{
			/* only the owner may drop them: let PostgreSQL refuse others */
			if (!OidIsValid(get_namespace_oid("invoice_seq", true)) ||
				!has_privs_of_role(GetUserId(), invoice_seq_owner()))
				return false;
			check_archive();
			return true;
		}
	}
	return false;
}

/*
 * Refuse the DDL that would change the record.  Returns true if the
 * statement drops the record and its archive was verified: the caller then
 * permits the drops while it runs (record_guard_permit_drop).
 */
bool
record_guard_utility(Node *parsetree)
{
	if (exempt())
		return false;
	switch (nodeTag(parsetree))
	{
		case T_AlterExtensionContentsStmt:
			guard_extension_contents((AlterExtensionContentsStmt *) parsetree);
			break;
		case T_DropStmt:
			return guard_drop((DropStmt *) parsetree);
		case T_RenameStmt:
			guard_rename((RenameStmt *) parsetree);
			break;
		case T_AlterObjectSchemaStmt:
			guard_set_schema((AlterObjectSchemaStmt *) parsetree);
			break;
		case T_AlterTableStmt:
			guard_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_RuleStmt:
			guard_relation(((RuleStmt *) parsetree)->relation, RECORD_DDL_RULE);
			break;
		case T_CreateTrigStmt:
			guard_relation(((CreateTrigStmt *) parsetree)->relation, RECORD_DDL_TRIGGER);
			break;
		case T_CreatePolicyStmt:
			guard_relation(((CreatePolicyStmt *) parsetree)->table, RECORD_DDL_POLICY);
			break;
		case T_CreateStmt:
			guard_create_table((CreateStmt *) parsetree);
			break;
		case T_TruncateStmt:
			guard_truncate_series((TruncateStmt *) parsetree);
			break;
		case T_CreateFunctionStmt:
			if (((CreateFunctionStmt *) parsetree)->replace)
				guard_function(((CreateFunctionStmt *) parsetree)->funcname, NULL);
			break;
		case T_AlterFunctionStmt:
			guard_function(NIL, ((AlterFunctionStmt *) parsetree)->func);
			break;
		default:
			break;
	}
	return false;
}

void
record_guard_note_rewrite(Oid transient)
{
	rewritten = transient;
	rewritten_lxid = MyLocalTransactionId;
}

void
record_guard_permit_drop(bool permit)
{
	drop_permitted = permit;
}

static bool
table_has_rows(Oid relid)
{
	const char *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid));
	bool		isnull;
	bool		result;
	int			rc;

	SPI_connect();
	rc = SPI_execute(psprintf("SELECT EXISTS (SELECT FROM %s)", name), true, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "looking for rows of the record");
	result = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return result;
}

/*
 * A table about to be dropped, by whatever command: refuse it if it is a
 * table of the record with rows, unless its archive was verified.
 */
void
record_guard_object_drop(Oid relid)
{
	if (relid == archived && archived_lxid == MyLocalTransactionId)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot drop table \"%s\"", get_rel_name(relid)),
				 errdetail("It is the archive of the legal record dropped in this transaction."),
				 errhint("Drop it in a later transaction, if you must.")));
	if (drop_permitted || exempt() || !record_guard_is_record_table(relid) ||
		(relid == rewritten && rewritten_lxid == MyLocalTransactionId))
		return;
	if (table_has_rows(relid))
		refuse(RECORD_DDL_DROP, relid);
}

/*
 * Seal every chain to its end, so that the archive links every final entry
 * (unless this transaction cannot write: then it holds what is sealed).
 */
static void
seal_every_chain(void)
{
	MemoryContext loop;
	SPITupleTable *chains;
	uint64		nchains;
	uint64		i;
	int			rc;

	if (XactReadOnly || RecoveryInProgress())
		return;
	rc = SPI_execute("SELECT DISTINCT s.name, e.period FROM invoice_seq.ledger_entry e"
					 " JOIN invoice_seq.series_def s ON s.id OPERATOR(pg_catalog.=) e.series_id"
					 " WHERE e.status OPERATOR(pg_catalog.<>) 'reserved'", true, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "listing the chains to seal");
	chains = SPI_tuptable;
	nchains = SPI_processed;
	loop = AllocSetContextCreate(CurrentMemoryContext, "archive_record sealing",
								 ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < nchains; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(loop);
		InvoiceSeries series;

		series_get(SPI_getvalue(chains->vals[i], chains->tupdesc, 1), &series);
		chain_seal_to_end(&series, SPI_getvalue(chains->vals[i], chains->tupdesc, 2));
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop);
	}
	MemoryContextDelete(loop);
}

/*
 * archive_record(): the whole record, for an archive, every chain sealed.  Read in batches
 * through a cursor, each batch's memory freed before the next.
 */
Datum
invoice_seq_archive_record(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			nestlevel;
	Portal		portal;

	InitMaterializedSRF(fcinfo, 0);
	nestlevel = pin_rendering();
	SPI_connect();
	seal_every_chain();
	/* not read-only: a new snapshot, which sees the links just made */
	portal = SPI_cursor_open_with_args(NULL, RECORD_QUERY, 0, NULL, NULL, NULL,
									   false, 0);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
			tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	return (Datum) 0;
}
