/*-------------------------------------------------------------------------
 *
 * ledger_write.c
 *		Writing ledger rows without the executor: the insert of a new
 *		entry, and the lock and update of one entry by its tuple id, each
 *		one call of the table's access method plus the index entries.
 *
 * Every number costs the insert of its entry, and a two-phase number a
 * lock and an update of it more.  Run as SPI statements, each of them
 * started and ended an executor, and planned the table's six CHECK
 * constraints again from their text (PostgreSQL keeps them per executor
 * state): in perf of the compact two-phase flow at 32 clients, those
 * statements took a fifth of the backends' CPU, the constraints alone 7 %.
 * Our functions build these rows themselves, so they write them the way
 * PostgreSQL's catalog code writes catalog rows (CatalogTupleInsert):
 *
 *	- the row must satisfy the table's CHECK constraints by construction;
 *	  with assertions enabled, entry_row_valid() checks it.  The
 *	  constraints stay on the table, for every other writer;
 *	- the tuple goes through the table's access method, so invoice_ledger
 *	  (ledger_am.c) still decides which updates are allowed;
 *	- every index that accepts inserts gets its entry, partial and
 *	  expression indexes included, unique ones with the same uniqueness
 *	  check (and the same error, naming the index) as the executor's;
 *	- the command counter is then advanced, as after an SPI statement, so
 *	  that what follows in the statement sees the row.
 *
 * Nothing else runs on a ledger row: record_guard.c refuses triggers,
 * rules, policies, new columns and new constraints on the legal record,
 * and inheritance or partitions under it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "invoice_seq.h"
#include "ledger_write.h"
#include "pg_version_compat.h"
#include "util.h"

#ifdef USE_ASSERT_CHECKING
/* The rules of invoice_seq.ledger_entry's NOT NULL and CHECK constraints. */
static bool
entry_row_valid(const Datum *values, const bool *isnull)
{
	static const int not_null[] = {ENTRY_ATT_SERIES_ID, ENTRY_ATT_PERIOD,
		ENTRY_ATT_INVOICE_NO, ENTRY_ATT_DISPLAY_NO, ENTRY_ATT_STATUS,
	ENTRY_ATT_RESERVED_AT, ENTRY_ATT_RESERVED_BY};
	EntryStatus status;
	bool		issued;
	bool		voided;

	for (int i = 0; i < (int) lengthof(not_null); i++)
		if (isnull[not_null[i] - 1])
			return false;
	if (DatumGetInt64(values[ENTRY_ATT_INVOICE_NO - 1]) < 1)
		return false;
	/* an unknown status is an error of its own (parse_entry_status) */
	status = parse_entry_status(TextDatumGetCString(values[ENTRY_ATT_STATUS - 1]));
	issued = (status == ENTRY_ISSUED);
	voided = (status == ENTRY_VOIDED);
	if (issued != !isnull[ENTRY_ATT_CONFIRMED_AT - 1])
		return false;
	if (voided != (!isnull[ENTRY_ATT_VOIDED_AT - 1] &&
				   !isnull[ENTRY_ATT_VOID_REASON - 1]))
		return false;
	if (!isnull[ENTRY_ATT_HOLDER_XID - 1] &&
		!isnull[ENTRY_ATT_IDEMPOTENCY_KEY - 1])
		return false;
	return isnull[ENTRY_ATT_APP_DIGEST - 1] ||
		VARSIZE_ANY_EXHDR(DatumGetPointer(values[ENTRY_ATT_APP_DIGEST - 1])) ==
		ISEQ_APP_DIGEST_LEN;
}
#endif

/* A slot of rel holding the row (values, isnull). */
static TupleTableSlot *
row_slot(Relation rel, Datum *values, bool *isnull)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	if (RelationGetDescr(rel)->natts != ENTRY_NATTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table \"%s\" does not have the columns of invoice_seq's ledger",
						RelationGetRelationName(rel)),
				 errhint("Update the extension: ALTER EXTENSION invoice_seq UPDATE.")));
	Assert(entry_row_valid(values, isnull));
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * ENTRY_NATTS);
	memcpy(slot->tts_isnull, isnull, sizeof(bool) * ENTRY_NATTS);
	ExecStoreVirtualTuple(slot);
	return slot;
}

/*
 * Does the slot's row belong in the index?  A partial index's predicate is
 * evaluated in an executor state made on first need (*estate).
 */
static bool
index_wants_row(IndexInfo *info, TupleTableSlot *slot, EState **estate)
{
	ExprContext *econtext;

	if (info->ii_Expressions == NIL && info->ii_Predicate == NIL)
		return true;
	if (*estate == NULL)
		*estate = CreateExecutorState();
	econtext = GetPerTupleExprContext(*estate);
	econtext->ecxt_scantuple = slot;
	if (info->ii_Predicate == NIL)
		return true;
	if (info->ii_PredicateState == NULL)
		info->ii_PredicateState = ExecPrepareQual(info->ii_Predicate, *estate);
	return ExecQual(info->ii_PredicateState, econtext);
}

/*
 * Give the slot's row (at slot->tts_tid) its entry in every index of rel
 * that accepts inserts; with summarizing_only, in the summarizing ones
 * only (BRIN, after a HOT update).  "unchanged" tells the index that the
 * row is a new version with the same key (bottom-up deletion).
 */
static void
insert_index_entries(Relation rel, TupleTableSlot *slot,
					 bool summarizing_only, bool unchanged)
{
	List	   *indexes = RelationGetIndexList(rel);
	EState	   *estate = NULL;
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(index);
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];

		/* record_guard.c refuses the constraints that would need more */
		Assert(info->ii_ExclusionOps == NULL && index->rd_index->indimmediate);
		if (info->ii_ReadyForInserts &&
			(!summarizing_only || INDEX_IS_SUMMARIZING(index)) &&
			index_wants_row(info, slot, &estate))
		{
			FormIndexDatum(info, slot, estate, values, isnull);
			(void) index_insert(index, values, isnull, &slot->tts_tid, rel,
								info->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
								unchanged, info);
		}
		if (estate != NULL)
			ResetPerTupleExprContext(estate);
		index_close(index, NoLock);
	}
	if (estate != NULL)
		FreeExecutorState(estate);
	list_free(indexes);
}

/*
 * Insert the row (values, isnull) into rel, the ledger, in the current
 * command.  A duplicate key raises unique_violation naming the index.
 */
void
ledger_write_insert(Relation rel, Datum *values, bool *isnull)
{
	TupleTableSlot *slot = row_slot(rel, values, isnull);

	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	insert_index_entries(rel, slot, false, false);
	ExecDropSingleTupleTableSlot(slot);
	CommandCounterIncrement();
}

/*
 * Lock the row at *tid of rel for update, waiting for a transaction that
 * holds it, as SELECT ... FOR UPDATE does.  On TM_Ok, slot holds the row.
 * TM_Updated or TM_Deleted: a transaction that committed meanwhile made a
 * newer version (the caller looks for it again, or fails to serialize).
 */
TM_Result
ledger_write_lock(Relation rel, ItemPointer tid, TupleTableSlot *slot)
{
	TM_FailureData tmfd;

	return table_tuple_lock(rel, tid, GetLatestSnapshot(), slot,
							GetCurrentCommandId(true), LockTupleExclusive,
							LockWaitBlock, 0, &tmfd);
}

/*
 * Replace the row at *tid of rel, which this transaction has locked, by
 * (values, isnull), in the current command.  The access method decides
 * whether the update is allowed (ledger_am_permit_update()).
 */
void
ledger_write_update(Relation rel, ItemPointer tid, Datum *values, bool *isnull)
{
	TupleTableSlot *slot = row_slot(rel, values, isnull);
	TU_UpdateIndexes update_indexes;

	simple_table_tuple_update(rel, tid, slot, GetLatestSnapshot(),
							  &update_indexes);
	if (UPDATE_NEEDS_INDEX_ENTRIES(update_indexes))
		insert_index_entries(rel, slot,
							 UPDATE_SUMMARIZING_ONLY(update_indexes), true);
	ExecDropSingleTupleTableSlot(slot);
	CommandCounterIncrement();
}
