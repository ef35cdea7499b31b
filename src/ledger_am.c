/*-------------------------------------------------------------------------
 *
 * ledger_am.c
 *		The invoice_ledger table access method: heap storage that refuses
 *		to lose or rewrite rows.
 *
 * The ledger is the legal record.  Privileges and triggers can be bypassed
 * by the table's owner or a superuser (ALTER TABLE ... DISABLE TRIGGER,
 * session_replication_role = replica), but every row change goes through
 * the table's access method.  invoice_ledger is heap with three callbacks
 * replaced:
 *
 *	tuple_delete		always refused;
 *	tuple_update		refused, except the ledger transitions that
 *						invoice_seq's own functions make, one named entry at
 *						a time (ledger_am_permit_update);
 *	truncation			refused (relation_nontransactional_truncate, and
 *						relation_set_new_filelocator on a table that already
 *						existed before this transaction).
 *
 * A ProcessUtility hook refuses the utility commands that would get around
 * it: TRUNCATE (with a clear message), ALTER TABLE ... SET ACCESS METHOD away
 * from invoice_ledger, and DROP ... CASCADE of the extension, its schema or
 * the access method while other tables use it.  It and an object access
 * hook then ask record_guard.c, which keeps the tables of the legal record
 * themselves from being dropped, renamed, moved or altered.
 *
 * heap_getnext() refuses to run on a relation whose rd_tableam is not heap's
 * own routine struct, and heap's index build, index validation and
 * rewrite code call it.  Those delegated calls therefore run with
 * rd_tableam switched to heap's, restored in PG_FINALLY.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_am.h"
#include "commands/extension.h"
#include "commands/defrem.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "ledger_am.h"
#include "pg_version_compat.h"
#include "record_guard.h"
#include "util.h"

PG_FUNCTION_INFO_V1(invoice_seq_ledger_handler);

/* heap's routine, and ours: a copy of it with some callbacks replaced */
static const TableAmRoutine *heap_routine = NULL;
static TableAmRoutine ledger_routine;

/* the one ledger entry that the extension's code may update right now */
static struct
{
	bool		active;
	int32		series_id;
	char		period[ISEQ_MAX_PERIOD + 1];
	int64		invoice_no;
} permitted;

static ProcessUtility_hook_type prev_process_utility = NULL;
static object_access_hook_type prev_object_access = NULL;

/*
 * Run a heap callback on rel with rel->rd_tableam set to heap's routine, so
 * that heap's own checks accept the relation.
 */
#define AS_HEAP(rel, call) \
	do { \
		const TableAmRoutine *saved_ = (rel)->rd_tableam; \
		(rel)->rd_tableam = heap_routine; \
		PG_TRY(); \
		{ \
			call; \
		} \
		PG_FINALLY(); \
		{ \
			(rel)->rd_tableam = saved_; \
		} \
		PG_END_TRY(); \
	} while (0)

static void
refuse(Relation rel, const char *operation, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot %s table \"%s\"", operation,
					RelationGetRelationName(rel)),
			 errdetail("%s", detail)));
}

#define TRANSITIONS_ONLY_DETAIL \
	"Ledger entries are changed only by invoice_seq's functions, from reserved to issued or voided."
#define INSERT_ONLY_DETAIL \
	"It uses the invoice_ledger access method: its rows are never deleted or changed."

/* Is rel invoice_seq.ledger_entry, the extension's own ledger? */
static bool
is_extension_ledger(Relation rel)
{
	Oid			nspid = get_namespace_oid("invoice_seq", true);

	return OidIsValid(nspid) &&
		RelationGetNamespace(rel) == nspid &&
		strcmp(RelationGetRelationName(rel), "ledger_entry") == 0;
}

/*
 * Let the extension's next UPDATE change the ledger entry (series_id,
 * period, invoice_no), and nothing else, until ledger_am_end_update().
 */
void
ledger_am_permit_update(int32 series_id, const char *period, int64 invoice_no)
{
	permitted.active = true;
	permitted.series_id = series_id;
	strlcpy(permitted.period, period, sizeof(permitted.period));
	permitted.invoice_no = invoice_no;
}

void
ledger_am_end_update(void)
{
	permitted.active = false;
}

/* Only a reserved entry changes; issued and voided are final. */
static bool
slot_is_reserved(TupleTableSlot *slot)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, ENTRY_ATT_STATUS, &isnull);

	return !isnull && strcmp(TextDatumGetCString(d), "reserved") == 0;
}

/* Does the slot hold the permitted entry, in a state it may leave? */
static bool
slot_is_permitted_entry(TupleTableSlot *slot, bool old_version)
{
	bool		isnull;
	Datum		d;
	char	   *s;

	d = slot_getattr(slot, 1, &isnull);
	if (isnull || DatumGetInt32(d) != permitted.series_id)
		return false;
	d = slot_getattr(slot, 2, &isnull);
	if (isnull)
		return false;
	s = TextDatumGetCString(d);
	if (strcmp(s, permitted.period) != 0)
		return false;
	d = slot_getattr(slot, 3, &isnull);
	if (isnull || DatumGetInt64(d) != permitted.invoice_no)
		return false;
	return !old_version || slot_is_reserved(slot);
}

static TM_Result
ledger_tuple_delete(Relation rel, ItemPointer tid, CommandId cid,
					Snapshot snapshot, Snapshot crosscheck, bool wait,
					TM_FailureData *tmfd, bool changingPart)
{
	refuse(rel, "delete from", INSERT_ONLY_DETAIL);
	return TM_Ok;				/* keep compiler quiet */
}

static TM_Result
ledger_tuple_update(Relation rel, ItemPointer otid, TupleTableSlot *slot,
					CommandId cid, Snapshot snapshot, Snapshot crosscheck,
					bool wait, TM_FailureData *tmfd,
					LockTupleMode *lockmode, TU_UpdateIndexes *update_indexes)
{
	TupleTableSlot *oldslot;
	bool		by_script;
	bool		ok;

	if (!is_extension_ledger(rel))
		refuse(rel, "update", INSERT_ONLY_DETAIL);
	by_script = invoice_seq_running_own_script(false);
	if (!by_script && (!permitted.active || !slot_is_permitted_entry(slot, false)))
		refuse(rel, "update",
			   TRANSITIONS_ONLY_DETAIL);

	oldslot = table_slot_create(rel, NULL);
	ok = heap_routine->tuple_fetch_row_version(rel, otid, SnapshotAny, oldslot) &&
		(by_script ? slot_is_reserved(oldslot) : slot_is_permitted_entry(oldslot, true));
	ExecDropSingleTupleTableSlot(oldslot);
	if (!ok)
		refuse(rel, "update",
			   TRANSITIONS_ONLY_DETAIL);

	return heap_routine->tuple_update(rel, otid, slot, cid, snapshot,
									  crosscheck, wait, tmfd, lockmode,
									  update_indexes);
}

/*
 * A new relfilenode for a table that existed before this transaction is
 * TRUNCATE; for one created in it, it is CREATE TABLE, or the transient
 * table of a rewrite (VACUUM FULL, CLUSTER, ALTER TABLE).
 */
static void
ledger_relation_set_new_filelocator(Relation rel, const RelFileLocator *newrlocator,
									char persistence, TransactionId *freezeXid,
									MultiXactId *minmulti)
{
	/*
	 * Only a table created in this transaction may get a new, empty file.
	 * A new file given to an older table earlier in the transaction (SET
	 * TABLESPACE) does not make it one: a TRUNCATE in a savepoint after it
	 * comes here too.
	 */
	if (rel->rd_createSubid == InvalidSubTransactionId)
		refuse(rel, "truncate", INSERT_ONLY_DETAIL);
	heap_routine->relation_set_new_filelocator(rel, newrlocator, persistence,
											   freezeXid, minmulti);
}

static void
ledger_relation_nontransactional_truncate(Relation rel)
{
	refuse(rel, "truncate", INSERT_ONLY_DETAIL);
}

static void
ledger_relation_copy_data(Relation rel, const RelFileLocator *newrlocator)
{
	AS_HEAP(rel, heap_routine->relation_copy_data(rel, newrlocator));
}

static void
ledger_relation_copy_for_cluster(Relation OldTable, Relation NewTable,
								 Relation OldIndex, bool use_sort,
								 TransactionId OldestXmin,
								 TransactionId *xid_cutoff,
								 MultiXactId *multi_cutoff,
								 double *num_tuples, double *tups_vacuumed,
								 double *tups_recently_dead)
{
	const TableAmRoutine *saved_old = OldTable->rd_tableam;
	const TableAmRoutine *saved_new = NewTable->rd_tableam;

	/* after the swap, the new table's OID names the old rows: let it go */
	record_guard_note_rewrite(RelationGetRelid(NewTable));

	/* both tables, in one PG_TRY: AS_HEAP would nest a second one */
	OldTable->rd_tableam = heap_routine;
	NewTable->rd_tableam = heap_routine;
	PG_TRY();
	{
		heap_routine->relation_copy_for_cluster(OldTable, NewTable,
												OldIndex, use_sort,
												OldestXmin, xid_cutoff,
												multi_cutoff, num_tuples,
												tups_vacuumed,
												tups_recently_dead);
	}
	PG_FINALLY();
	{
		OldTable->rd_tableam = saved_old;
		NewTable->rd_tableam = saved_new;
	}
	PG_END_TRY();
}

static void
ledger_relation_vacuum(Relation rel, struct VacuumParams *params,
					   BufferAccessStrategy bstrategy)
{
	AS_HEAP(rel, heap_routine->relation_vacuum(rel, params, bstrategy));
}

static double
ledger_index_build_range_scan(Relation table_rel, Relation index_rel,
							  struct IndexInfo *index_info, bool allow_sync,
							  bool anyvisible, bool progress,
							  BlockNumber start_blockno, BlockNumber numblocks,
							  IndexBuildCallback callback, void *callback_state,
							  TableScanDesc scan)
{
	volatile double result = 0;

	AS_HEAP(table_rel,
			result = heap_routine->index_build_range_scan(table_rel, index_rel,
														  index_info, allow_sync,
														  anyvisible, progress,
														  start_blockno, numblocks,
														  callback, callback_state,
														  scan));
	return result;
}

static void
ledger_index_validate_scan(Relation table_rel, Relation index_rel,
						   struct IndexInfo *index_info, Snapshot snapshot,
						   struct ValidateIndexState *state)
{
	AS_HEAP(table_rel,
			heap_routine->index_validate_scan(table_rel, index_rel, index_info,
											  snapshot, state));
}

/* TOAST tables of ledgers are plain heap. */
static Oid
ledger_relation_toast_am(Relation rel)
{
	return HEAP_TABLE_AM_OID;
}

/* invoice_seq.invoice_ledger_handler(internal) RETURNS table_am_handler */
Datum
invoice_seq_ledger_handler(PG_FUNCTION_ARGS)
{
	if (heap_routine == NULL)
	{
		heap_routine = GetHeapamTableAmRoutine();
		ledger_routine = *heap_routine;
		ledger_routine.tuple_delete = ledger_tuple_delete;
		ledger_routine.tuple_update = ledger_tuple_update;
		ledger_routine.relation_set_new_filelocator = ledger_relation_set_new_filelocator;
		ledger_routine.relation_nontransactional_truncate = ledger_relation_nontransactional_truncate;
		ledger_routine.relation_copy_data = ledger_relation_copy_data;
		ledger_routine.relation_copy_for_cluster = ledger_relation_copy_for_cluster;
		ledger_routine.relation_vacuum = ledger_relation_vacuum;
		ledger_routine.index_build_range_scan = ledger_index_build_range_scan;
		ledger_routine.index_validate_scan = ledger_index_validate_scan;
		ledger_routine.relation_toast_am = ledger_relation_toast_am;
	}
	PG_RETURN_POINTER(&ledger_routine);
}

/* The access method of a relation, or InvalidOid if there is none. */
static Oid
relation_am(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			am;

	if (!HeapTupleIsValid(tuple))
		return InvalidOid;
	am = ((Form_pg_class) GETSTRUCT(tuple))->relam;
	ReleaseSysCache(tuple);
	return am;
}

static Oid
ledger_am_oid(void)
{
	return get_table_am_oid("invoice_ledger", true);
}

/*
 * DROP ... CASCADE of the extension, its schema or the access method would
 * also drop the other tables that use invoice_ledger, with their rows.
 */
static void
check_cascade(void)
{
	int			rc;

	SPI_connect();
	rc = SPI_execute("SELECT c.oid::pg_catalog.regclass::pg_catalog.text"
					 " FROM pg_catalog.pg_class c"
					 " JOIN pg_catalog.pg_am a ON a.oid OPERATOR(pg_catalog.=) c.relam"
					 " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
					 " WHERE a.amname OPERATOR(pg_catalog.=) 'invoice_ledger'"
					 " AND n.nspname OPERATOR(pg_catalog.<>) 'invoice_seq'"
					 " ORDER BY 1 LIMIT 1", true, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "finding tables that use invoice_ledger");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot drop with CASCADE: table %s uses the invoice_ledger access method",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errdetail("CASCADE would drop the table and its rows."),
				 errhint("Copy its rows into a table of another access method first, and drop it yourself.")));
	SPI_finish();
}

/* A table about to be dropped: the record's tables are guarded. */
static void
ledger_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					 int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);

	if (access == OAT_DROP && classId == RelationRelationId && subId == 0)
		record_guard_object_drop(objectId);
}

/* TRUNCATE: the access method refuses it too; this gives a clearer message. */
static void
refuse_truncate(TruncateStmt *stmt)
{
	Oid			am = ledger_am_oid();
	ListCell   *lc;

	foreach(lc, stmt->relations)
	{
		RangeVar   *rv = lfirst_node(RangeVar, lc);
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);
		ListCell   *lc2;
		List	   *rels;

		if (!OidIsValid(am) || !OidIsValid(relid))
			continue;
		/* the table, and the partitions or children TRUNCATE recurses into */
		rels = rv->inh ? find_all_inheritors(relid, NoLock, NULL) : list_make1_oid(relid);
		foreach(lc2, rels)
		{
			if (relation_am(lfirst_oid(lc2)) == am)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("cannot truncate table \"%s\"", get_rel_name(lfirst_oid(lc2))),
						 errdetail(INSERT_ONLY_DETAIL)));
		}
	}
}

/* ALTER TABLE ... SET ACCESS METHOD away from invoice_ledger. */
static void
refuse_set_access_method(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
		Oid			am;
		Oid			relid;

		if (cmd->subtype != AT_SetAccessMethod ||
			(cmd->name != NULL && strcmp(cmd->name, "invoice_ledger") == 0))
			continue;
		am = ledger_am_oid();
		relid = RangeVarGetRelid(stmt->relation, NoLock, true);
		if (OidIsValid(am) && OidIsValid(relid) && relation_am(relid) == am)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cannot change the access method of table \"%s\"",
							stmt->relation->relname),
					 errdetail("It uses the invoice_ledger access method, which keeps its rows from being deleted or changed.")));
	}
}

/*
 * DROP ... CASCADE of the extension, its schema or the access method, while
 * other tables use invoice_ledger.
 */
static void
refuse_cascade(DropStmt *stmt)
{
	const char *name;
	ListCell   *lc;

	if (stmt->behavior != DROP_CASCADE)
		return;
	if (stmt->removeType == OBJECT_EXTENSION || stmt->removeType == OBJECT_SCHEMA)
		name = "invoice_seq";
	else if (stmt->removeType == OBJECT_ACCESS_METHOD)
		name = "invoice_ledger";
	else
		return;
	foreach(lc, stmt->objects)
	{
		if (IsA(lfirst(lc), String) &&
			strcmp(strVal(lfirst(lc)), name) == 0 &&
			OidIsValid(ledger_am_oid()))
			check_cascade();
	}
}

/* CREATE or ALTER EXTENSION invoice_seq: its script runs inside. */
static bool
is_own_extension_command(Node *parsetree)
{
	if (IsA(parsetree, CreateExtensionStmt))
		return strcmp(((CreateExtensionStmt *) parsetree)->extname, "invoice_seq") == 0;
	if (IsA(parsetree, AlterExtensionStmt))
		return strcmp(((AlterExtensionStmt *) parsetree)->extname, "invoice_seq") == 0;
	return false;
}

static void
next_process_utility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * Refuse the utility commands that would get around invoice_ledger on any
 * table, then those that would change the tables of the legal record
 * (record_guard.c).  A DROP EXTENSION whose archive is verified runs with
 * the record's drops permitted.
 */
static void
ledger_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	volatile bool own = is_own_extension_command(parsetree);
	volatile bool drops_record = false;

	if (IsA(parsetree, TruncateStmt))
		refuse_truncate((TruncateStmt *) parsetree);
	else if (IsA(parsetree, AlterTableStmt))
		refuse_set_access_method((AlterTableStmt *) parsetree);
	else if (IsA(parsetree, DropStmt))
		refuse_cascade((DropStmt *) parsetree);

	invoice_seq_utility_enter(own);
	PG_TRY();
	{
		drops_record = record_guard_utility(parsetree);
		if (drops_record)
			record_guard_permit_drop(true);
		next_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (drops_record)
			record_guard_permit_drop(false);
		invoice_seq_utility_exit(own);
	}
	PG_END_TRY();
}

void
ledger_am_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = ledger_process_utility;
	prev_object_access = object_access_hook;
	object_access_hook = ledger_object_access;
}
