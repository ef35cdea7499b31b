/*-------------------------------------------------------------------------
 *
 * caller.c
 *		Where one of our SQL functions is called from: by the statement the
 *		client sent, as its own result, or from anywhere else (the body of a
 *		function, procedure, trigger or DO block, another function's
 *		argument, a statement that writes rows).
 *
 * A reservation may be recorded in the caller's own transaction only if
 * its number can reach nobody before that transaction's commit decides its
 * fate (number.c).  The number that a client's SELECT returns as one of its
 * own result columns reaches the client with the statement's result, after
 * the commit.  Anywhere else some code gets the number first: a function,
 * procedure, trigger or DO block that calls us, a function that takes our
 * result as an argument, a trigger or a rule of a table the number is
 * written into.  It may show the number (RAISE NOTICE), send it (an HTTP
 * call, dblink), and then the transaction rolls back, and the number is
 * handed out again.  Whether it is safe is a property of the whole call
 * stack and of the statement, not of the innermost caller:
 * SPI_inside_nonatomic_context() sees only the innermost SPI connection.
 *
 * How it is told.  The planner, executor and utility hooks count how deeply
 * statements nest, as pg_stat_statements does.  The query that the executor
 * starts at level zero, inside a portal, is the client's statement (the
 * statements of a procedure, a DO block or EXECUTE run inside a utility
 * command, one level down or more); "running" marks the time its own
 * ExecutorRun or ExecutorFinish is under way at level zero.  A call is the
 * client's own result if, while the client's statement runs and nothing is
 * nested in it, the call's expression node (fn_expr) is a whole column of
 * that statement's plan: a target entry of a SELECT without a FROM clause,
 * or the one function of a SELECT ... FROM f(...) whose columns are passed
 * on as they are.  Its lookup data (FmgrInfo) must moreover live in that
 * statement's executor state.  The statement must be a plain SELECT (no
 * data-modifying WITH, no FOR UPDATE), run to its end at once (a
 * row-limited Execute would send the row before the commit), and it
 * returns one row.  Anything else is "not the client's own result", which
 * is always safe: such reservations go to the sequencer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/plannodes.h"
#include "optimizer/planner.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/memutils.h"

#include "caller.h"
#include "pg_version_compat.h"

/* How many planner, executor and utility calls are running around us. */
static int	nesting_level = 0;

/* The client's statement, from its ExecutorStart to its ExecutorEnd. */
static QueryDesc *client_query = NULL;

/* Its ExecutorRun or ExecutorFinish is under way, at level zero. */
static bool client_running = false;

/* It was run with a row limit, in this or an earlier ExecutorRun. */
static bool client_limited = false;

static planner_hook_type prev_planner = NULL;
static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static ExecutorEnd_hook_type prev_executor_end = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * Run "call" one nesting level deeper, marked as the client's statement's
 * own run if it is one, and come back to this level even if it fails.
 */
#define NESTED(client, call) \
	do { \
		bool		was_running = client_running; \
		\
		nesting_level++; \
		client_running = (client); \
		PG_TRY(); \
		{ \
			call; \
		} \
		PG_FINALLY(); \
		{ \
			nesting_level--; \
			client_running = was_running; \
		} \
		PG_END_TRY(); \
	} while (0)

/* Is this the client's statement, run at level zero? */
static inline bool
running_client(QueryDesc *queryDesc)
{
	return nesting_level == 0 && queryDesc == client_query;
}

static PlannedStmt *
caller_planner(Query *parse, const char *query_string, int cursorOptions,
			   ParamListInfo boundParams)
{
	PlannedStmt *volatile result = NULL;

	NESTED(false,
		   result = prev_planner ?
		   prev_planner(parse, query_string, cursorOptions, boundParams) :
		   standard_planner(parse, query_string, cursorOptions, boundParams));
	return result;
}

static void
caller_executor_start(QueryDesc *queryDesc, int eflags)
{
	bool		client = (nesting_level == 0 && ActivePortal != NULL);

	NESTED(false, prev_executor_start ? prev_executor_start(queryDesc, eflags) :
		   standard_ExecutorStart(queryDesc, eflags));
	if (client)
	{
		client_query = queryDesc;
		client_limited = false;
	}
}

static void
caller_executor_run(QueryDesc *queryDesc, ScanDirection direction,
					uint64 count EXECUTOR_RUN_ONCE_PARAM)
{
	bool		client = running_client(queryDesc);

	if (client && count != 0)
		client_limited = true;
	NESTED(client, prev_executor_run ?
		   prev_executor_run(queryDesc, direction, count EXECUTOR_RUN_ONCE_ARG) :
		   standard_ExecutorRun(queryDesc, direction, count EXECUTOR_RUN_ONCE_ARG));
}

static void
caller_executor_finish(QueryDesc *queryDesc)
{
	NESTED(running_client(queryDesc),
		   prev_executor_finish ? prev_executor_finish(queryDesc) :
		   standard_ExecutorFinish(queryDesc));
}

static void
caller_executor_end(QueryDesc *queryDesc)
{
	if (queryDesc == client_query)
		client_query = NULL;
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
	NESTED(false, prev_process_utility ?
		   prev_process_utility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc) :
		   standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								   params, queryEnv, dest, qc));
}

/*
 * A statement that fails never reaches ExecutorEnd: forget it when its
 * transaction or subtransaction aborts, before a new one can be made at the
 * same address.  The nesting level is left alone: a procedure's ROLLBACK
 * aborts its transaction from inside a CALL, and the levels unwind by
 * themselves (NESTED).
 */
static void
caller_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		client_query = NULL;
}

static void
caller_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		client_query = NULL;
}

/* Is expr a whole column of the plan of a SELECT, with one row? */
static bool
is_result_column(const Plan *plan, const Node *expr)
{
	ListCell   *lc;

	if (IsA(plan, Result) && plan->lefttree == NULL)
	{
		foreach(lc, plan->targetlist)
			if ((Node *) lfirst_node(TargetEntry, lc)->expr == expr)
				return true;
		return false;
	}
	if (IsA(plan, FunctionScan) && plan->qual == NIL &&
		list_length(((const FunctionScan *) plan)->functions) == 1 &&
		lfirst_node(RangeTblFunction,
					list_head(((const FunctionScan *) plan)->functions))->funcexpr == expr)
	{
		foreach(lc, plan->targetlist)
			if (!IsA(lfirst_node(TargetEntry, lc)->expr, Var))
				return false;
		return true;
	}
	return false;
}

/*
 * Is this call a column of the client's own result, so that the value it
 * returns reaches the client, and nobody else, after the statement ends?
 */
bool
caller_is_client_statement(FunctionCallInfo fcinfo)
{
	const PlannedStmt *stmt;

	if (client_query == NULL || !client_running || nesting_level != 1 ||
		client_limited || fcinfo->flinfo == NULL ||
		client_query->estate == NULL ||
		fcinfo->flinfo->fn_mcxt != client_query->estate->es_query_cxt)
		return false;
	stmt = client_query->plannedstmt;
	return stmt->commandType == CMD_SELECT && !stmt->hasModifyingCTE &&
		stmt->rowMarks == NIL &&
		is_result_column(stmt->planTree, fcinfo->flinfo->fn_expr);
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
	RegisterSubXactCallback(caller_subxact_callback, NULL);
}
