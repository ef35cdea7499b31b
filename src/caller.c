/*-------------------------------------------------------------------------
 *
 * caller.c
 *		Where one of our SQL functions is called from: by the statement the
 *		client sent, or from the body of a function, procedure, trigger or
 *		DO block that it runs.
 *
 * A reservation may be recorded in the caller's own transaction only if
 * its number can reach nobody before that transaction's commit decides its
 * fate (number.c).  The number of a function called by the client's own
 * statement reaches the client with the statement's result, after the
 * commit.  A function, procedure, trigger or DO block that calls us gets
 * the number first: it may show it (RAISE NOTICE), send it (an HTTP call,
 * dblink), and then roll back, and the number would be handed out again.
 * Whether it is safe is therefore a property of the whole call stack, not
 * of the innermost caller; SPI_inside_nonatomic_context() sees only the
 * innermost SPI connection.
 *
 * How it is told.  The planner, executor and utility hooks count how deeply
 * statements nest, as pg_stat_statements does.  The query that the
 * executor starts at level zero, inside a portal, is the client's statement
 * (a statement of a procedure, a DO block or EXECUTE runs inside a utility
 * command, at level one or more).  Its executor state's memory context then
 * identifies the functions of its own plan: ExecInitExpr made their lookup
 * data (FmgrInfo) there, or, for a multi-row VALUES list, in a per-tuple
 * context just below it.  A function called from a PL/pgSQL body belongs
 * to another plan, an SPI query's or PL/pgSQL's simple-expression state,
 * whose contexts live elsewhere (under the transaction's context), and so
 * does the body of an SQL function that was not inlined (under a context
 * of its own).  Anything we cannot place is "not the client's statement",
 * which is always safe: such reservations go to the sequencer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "optimizer/planner.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/memutils.h"

#include "caller.h"
#include "pg_version_compat.h"

/* How many planner, executor and utility calls are running around us. */
static int	nesting_level = 0;

/* The executor state's context of the client's statement, or NULL. */
static MemoryContext client_query_cxt = NULL;

static planner_hook_type prev_planner = NULL;
static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static ExecutorEnd_hook_type prev_executor_end = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * Run fn(args) one nesting level deeper, and come back to this level even
 * if it fails.
 */
#define NESTED(call) \
	do { \
		nesting_level++; \
		PG_TRY(); \
		{ \
			call; \
		} \
		PG_FINALLY(); \
		{ \
			nesting_level--; \
		} \
		PG_END_TRY(); \
	} while (0)

static PlannedStmt *
caller_planner(Query *parse, const char *query_string, int cursorOptions,
			   ParamListInfo boundParams)
{
	PlannedStmt *volatile result = NULL;

	NESTED(result = prev_planner ?
		   prev_planner(parse, query_string, cursorOptions, boundParams) :
		   standard_planner(parse, query_string, cursorOptions, boundParams));
	return result;
}

static void
caller_executor_start(QueryDesc *queryDesc, int eflags)
{
	bool		client = (nesting_level == 0 && ActivePortal != NULL);

	NESTED(prev_executor_start ? prev_executor_start(queryDesc, eflags) :
		   standard_ExecutorStart(queryDesc, eflags));
	if (client && queryDesc->estate != NULL)
		client_query_cxt = queryDesc->estate->es_query_cxt;
}

static void
caller_executor_run(QueryDesc *queryDesc, ScanDirection direction,
					uint64 count EXECUTOR_RUN_ONCE_PARAM)
{
	NESTED(prev_executor_run ?
		   prev_executor_run(queryDesc, direction, count EXECUTOR_RUN_ONCE_ARG) :
		   standard_ExecutorRun(queryDesc, direction, count EXECUTOR_RUN_ONCE_ARG));
}

static void
caller_executor_finish(QueryDesc *queryDesc)
{
	NESTED(prev_executor_finish ? prev_executor_finish(queryDesc) :
		   standard_ExecutorFinish(queryDesc));
}

static void
caller_executor_end(QueryDesc *queryDesc)
{
	if (queryDesc->estate != NULL &&
		queryDesc->estate->es_query_cxt == client_query_cxt)
		client_query_cxt = NULL;
	if (prev_executor_end)
		prev_executor_end(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

static void
caller_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	NESTED(prev_process_utility ?
		   prev_process_utility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc) :
		   standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								   params, queryEnv, dest, qc));
}

/*
 * An aborted statement never reaches ExecutorEnd: forget it, before a new
 * context can be made at the same address.
 */
static void
caller_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		client_query_cxt = NULL;
		nesting_level = 0;
	}
}

/*
 * Is this function called by the client's statement itself, rather than
 * from the body of a function, procedure, trigger or DO block?
 */
bool
caller_is_client_statement(FunctionCallInfo fcinfo)
{
	MemoryContext cxt;

	if (client_query_cxt == NULL || fcinfo->flinfo == NULL)
		return false;
	cxt = fcinfo->flinfo->fn_mcxt;
	return cxt == client_query_cxt ||
		(cxt != NULL && cxt->parent == client_query_cxt);
}

void
caller_install_hooks(void)
{
	prev_planner = planner_hook;
	planner_hook = caller_planner;
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = caller_executor_start;
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = caller_executor_run;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = caller_executor_finish;
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = caller_executor_end;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = caller_process_utility;
	RegisterXactCallback(caller_xact_callback, NULL);
}
