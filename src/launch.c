/*-------------------------------------------------------------------------
 *
 * launch.c
 *		Starting each database's sequencer when a request needs it, and
 *		keeping it out of the way of commands that need the database alone.
 *
 * There is no launcher process.  Only a reservation made inside a
 * transaction block needs a sequencer, and it is made by a backend
 * connected to the very database the sequencer must serve.  That backend
 * queues its request on the database's entry and, if no sequencer runs
 * there, registers a dynamic background worker for it.  So every database
 * of the cluster can number without any setting, a database that never
 * reserves inside a block never has a worker, and templates or databases
 * that refuse connections never get one (nobody there asks).
 *
 * A sequencer exits when it has been idle for invoice_seq.idle_timeout, when
 * asked to (DROP EXTENSION, or a command that needs the database alone), or
 * on an error.  Requests left queued start the next one: at once after a
 * clean exit, and no sooner than ISEQ_RESTART_DELAY_MS after an error, so
 * that a database whose worker cannot start is not retried in a busy loop.
 * A crash of any process resets shared memory, and with it every entry.
 *
 * DROP DATABASE, CREATE DATABASE from a template, ALTER DATABASE RENAME
 * and SET TABLESPACE fail while another process is connected to the
 * database.  A ProcessUtility hook asks that database's sequencer to leave,
 * waits for it, and holds the entry so that no new one starts until the
 * command is over (or ISEQ_HOLD_MS has passed, if its backend died).
 *
 * Locking: every field of a DatabaseSequencer is read and written under
 * sequencer_shared->lock.  Registering a worker and waiting happen outside
 * it.  A worker attaches only to the start that registered it (the entry's
 * generation), so a late worker of an abandoned start exits at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "invoice_seq.h"
#include "launch.h"
#include "seal_due.h"

#define ISEQ_START_TIMEOUT_MS	10000	/* a start that never attached */
#define ISEQ_RESTART_DELAY_MS	1000	/* after an exit on an error */
#define ISEQ_HOLD_MS			60000	/* longest hold of a database */
#define ISEQ_LEAVE_WAIT_MS		10000	/* longest wait for a worker to leave */
#define ISEQ_WAKE_INTERVAL_MS	10000	/* a backend's tries to start a sealer */

/* What a registered worker is told, besides its entry's index. */
typedef struct LaunchToken
{
	Oid			dboid;
	uint32		generation;
} LaunchToken;

static ProcessUtility_hook_type prev_process_utility = NULL;

static inline int
entry_index(const DatabaseSequencer *db)
{
	return (int) (db - sequencer_shared->databases);
}

static void
entry_clear(DatabaseSequencer *db)
{
	memset(db, 0, sizeof(DatabaseSequencer));
	db->queue_head = -1;
	db->queue_tail = -1;
}

/* The entry of a database, or NULL.  Caller holds the lock. */
static DatabaseSequencer *
entry_find(Oid dboid)
{
	int			i;

	for (i = 0; i < sequencer_shared->ndatabases; i++)
		if (sequencer_shared->databases[i].dboid == dboid)
			return &sequencer_shared->databases[i];
	return NULL;
}

/*
 * The entry of a database, claimed if it has none: a free entry, or else
 * the least recently used one that has no sequencer, no queued request and
 * no hold (its counters are lost).  NULL if every entry is busy.  Caller
 * holds the lock exclusively.
 */
DatabaseSequencer *
launch_entry(Oid dboid)
{
	DatabaseSequencer *db = entry_find(dboid);
	DatabaseSequencer *victim = NULL;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (db != NULL)
		return db;
	for (i = 0; i < sequencer_shared->ndatabases; i++)
	{
		DatabaseSequencer *cand = &sequencer_shared->databases[i];

		if (!OidIsValid(cand->dboid))
		{
			victim = cand;
			break;
		}
		if (cand->state != SEQUENCER_STOPPED || cand->queue_head >= 0 ||
			cand->held_until > now)
			continue;
		if (victim == NULL || cand->last_used < victim->last_used)
			victim = cand;
	}
	if (victim == NULL)
		return NULL;
	entry_clear(victim);
	victim->dboid = dboid;
	victim->stats.reset_at = now;
	return victim;
}

/* The error of a request for which launch_entry() found no room. */
void
launch_entry_error(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("invoice_seq serves at most %d databases at once",
					sequencer_shared->ndatabases),
			 errdetail("Each of them has a sequencer running or requests waiting; no number was reserved."),
			 errhint("Retry later, or raise invoice_seq.max_databases and restart the server.")));
}

/* Should a backend with a queued request start a sequencer now? */
static bool
start_due(const DatabaseSequencer *db, TimestampTz now)
{
	if (db->held_until > now)
		return false;
	switch (db->state)
	{
		case SEQUENCER_RUNNING:
			return false;
		case SEQUENCER_STARTING:
			return TimestampDifferenceExceeds(db->started_at, now,
											  ISEQ_START_TIMEOUT_MS);
		case SEQUENCER_STOPPED:
			return db->failed_at == 0 ||
				TimestampDifferenceExceeds(db->failed_at, now,
										   ISEQ_RESTART_DELAY_MS);
	}
	return false;
}

/* Register the worker for one start of an entry. */
static bool
register_sequencer(int index, const LaunchToken *token)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "invoice_seq");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "invoice_seq_sequencer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "invoice_seq sequencer");
	snprintf(worker.bgw_type, BGW_MAXLEN, "invoice_seq sequencer");
	worker.bgw_main_arg = Int32GetDatum(index);
	StaticAssertStmt(sizeof(LaunchToken) <= BGW_EXTRALEN, "LaunchToken too long");
	memcpy(worker.bgw_extra, token, sizeof(LaunchToken));
	worker.bgw_notify_pid = 0;

	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

/*
 * Start the sequencer of a database, unless one runs or is starting (or the
 * database is held).  If no worker can be registered: with raise, 53400;
 * without, returns false.
 */
static bool
start_sequencer(Oid dboid, bool raise)
{
	TimestampTz now = GetCurrentTimestamp();
	LaunchToken token;
	DatabaseSequencer *db;
	int			index;

	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	db = entry_find(dboid);
	if (db == NULL || !start_due(db, now))
	{
		LWLockRelease(sequencer_shared->lock);
		return true;
	}
	index = entry_index(db);
	db->state = SEQUENCER_STARTING;
	db->generation++;
	db->started_at = now;
	token.dboid = db->dboid;
	token.generation = db->generation;
	LWLockRelease(sequencer_shared->lock);

	if (register_sequencer(index, &token))
		return true;

	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	if (db->generation == token.generation && db->state == SEQUENCER_STARTING)
	{
		db->state = SEQUENCER_STOPPED;
		db->failed_at = now;
	}
	LWLockRelease(sequencer_shared->lock);
	if (raise)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the invoice_seq sequencer of this database"),
				 errdetail("Every background worker slot is in use; no number was reserved."),
				 errhint("Raise max_worker_processes: a database needs a worker while it reserves inside transaction blocks.")));
	return false;
}

/* A backend with a queued request starts its database's sequencer. */
void
launch_sequencer_if_needed(Oid dboid)
{
	(void) start_sequencer(dboid, true);
}

/*
 * After a number was taken here: see that this database's sequencer runs,
 * to seal the chain in the background (invoice_seq.sealing).  While it
 * runs, this costs two unlocked reads of the entry found last time (an
 * entry's fields are aligned words, and a stale read only sends us to the
 * locked path).  Otherwise it tries at most every ISEQ_WAKE_INTERVAL_MS,
 * and never fails: the chain is then sealed on demand.
 */
void
launch_wake_sealer(void)
{
	static DatabaseSequencer *cached = NULL;
	static TimestampTz last_try = 0;
	TimestampTz now;

	if (sequencer_shared == NULL || !invoice_seq_sealing)
		return;
	if (cached != NULL && cached->dboid == MyDatabaseId &&
		cached->state != SEQUENCER_STOPPED)
		return;
	now = GetCurrentTimestamp();
	if (last_try != 0 &&
		!TimestampDifferenceExceeds(last_try, now, ISEQ_WAKE_INTERVAL_MS))
		return;
	last_try = now;

	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	cached = launch_entry(MyDatabaseId);
	LWLockRelease(sequencer_shared->lock);
	if (cached != NULL)
		(void) start_sequencer(MyDatabaseId, false);
}

/*
 * The sequencer joins the entry it was started for.  NULL if that start was
 * abandoned, or the database is held meanwhile: the worker should exit.
 */
DatabaseSequencer *
launch_attach(Datum main_arg, Oid *dboid)
{
	int			index = DatumGetInt32(main_arg);
	LaunchToken token;
	DatabaseSequencer *db;

	memcpy(&token, MyBgworkerEntry->bgw_extra, sizeof(LaunchToken));
	*dboid = token.dboid;
	if (index < 0 || index >= sequencer_shared->ndatabases)
		return NULL;

	db = &sequencer_shared->databases[index];
	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	if (db->dboid != token.dboid || db->generation != token.generation ||
		db->state != SEQUENCER_STARTING)
		db = NULL;
	else if (db->held_until > GetCurrentTimestamp())
	{
		db->state = SEQUENCER_STOPPED;
		db = NULL;
	}
	else
	{
		db->state = SEQUENCER_RUNNING;
		db->pid = MyProcPid;
		db->latch = MyLatch;
		db->stop = false;
		db->stats.starts++;
	}
	LWLockRelease(sequencer_shared->lock);
	return db;
}

/* The sequencer's exit; code is proc_exit's (nonzero: an error). */
void
launch_detach(DatabaseSequencer *db, int code)
{
	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	if (db->pid == MyProcPid)
	{
		db->state = SEQUENCER_STOPPED;
		db->pid = 0;
		db->latch = NULL;
		if (code != 0)
		{
			db->stats.failures++;
			db->failed_at = GetCurrentTimestamp();
		}
	}
	LWLockRelease(sequencer_shared->lock);
}

/*
 * Between batches: leave the entry if the sequencer was asked to, or if it
 * has been idle long enough and nothing is queued.  Returns true if it
 * left; the sequencer then exits.  Requests still queued after a stop
 * start the next sequencer, unless the database is held: then they wait
 * for the command that holds it (DROP DATABASE ... WITH (FORCE) ends them).
 */
bool
launch_leave_if_done(DatabaseSequencer *db, bool idle)
{
	bool		leave;

	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	leave = (db->stop || (idle && db->queue_head < 0)) && db->pid == MyProcPid;
	if (leave)
	{
		db->state = SEQUENCER_STOPPED;
		db->pid = 0;
		db->latch = NULL;
	}
	LWLockRelease(sequencer_shared->lock);
	return leave;
}

/*
 * Ask a database's sequencer to leave once its batch is answered.  With
 * hold, keep any new one from starting for ISEQ_HOLD_MS (claiming an entry
 * for the database if it has none, so that a session connected to it
 * cannot start one meanwhile), and wait (at most ISEQ_LEAVE_WAIT_MS) until
 * the worker has left the database.  Returns true if the hold claimed the
 * entry.
 */
static bool
stop_sequencer(Oid dboid, bool hold)
{
	DatabaseSequencer *db;
	Latch	   *latch = NULL;
	pid_t		pid = 0;
	bool		claimed = false;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	db = entry_find(dboid);
	if (db == NULL && hold)
	{
		db = launch_entry(dboid);
		claimed = (db != NULL);
	}
	if (db != NULL)
	{
		db->stop = true;
		if (hold)
			db->held_until = TimestampTzPlusMilliseconds(now, ISEQ_HOLD_MS);
		latch = db->latch;
		pid = db->pid;
	}
	LWLockRelease(sequencer_shared->lock);

	if (latch != NULL)
		SetLatch(latch);
	if (!hold || pid == 0)
		return claimed;

	/* gone from the process array, where the command will look for it */
	while (BackendPidGetProc(pid) != NULL &&
		   !TimestampDifferenceExceeds(now, GetCurrentTimestamp(),
									   ISEQ_LEAVE_WAIT_MS))
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return claimed;
}

/*
 * End a hold.  With forget (the database is gone, or the entry was claimed
 * only for the hold), free the entry if no sequencer and no request uses it.
 */
static void
release_database(Oid dboid, bool forget)
{
	DatabaseSequencer *db;

	LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
	db = entry_find(dboid);
	if (db != NULL)
	{
		db->held_until = 0;
		db->stop = false;
		if (forget && db->state == SEQUENCER_STOPPED && db->queue_head < 0)
			entry_clear(db);
	}
	LWLockRelease(sequencer_shared->lock);
}

/*
 * The database a utility command needs without other connections, or
 * InvalidOid: DROP DATABASE, CREATE DATABASE (its template), ALTER DATABASE
 * RENAME and SET TABLESPACE.
 */
static Oid
database_needed_alone(Node *parsetree)
{
	const char *name = NULL;
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			name = ((DropdbStmt *) parsetree)->dbname;
			break;
		case T_CreatedbStmt:
			name = "template1";
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
					name = defGetString(opt);
			}
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				name = ((RenameStmt *) parsetree)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
				if (strcmp(lfirst_node(DefElem, lc)->defname, "tablespace") == 0)
					name = ((AlterDatabaseStmt *) parsetree)->dbname;
			break;
		default:
			break;
	}
	return name != NULL ? get_database_oid(name, true) : InvalidOid;
}

/* Is this DROP EXTENSION invoice_seq? */
static bool
drops_extension(Node *parsetree)
{
	DropStmt   *stmt = (DropStmt *) parsetree;
	ListCell   *lc;

	if (!IsA(parsetree, DropStmt) || stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
		if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), "invoice_seq") == 0)
			return true;
	return false;
}

static void
call_next_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			   ProcessUtilityContext context, ParamListInfo params,
			   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * Clear a database of its sequencer for the commands that need it alone,
 * and stop this database's sequencer when the extension is dropped.
 */
static void
launch_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			dboid = InvalidOid;
	bool		claimed;
	volatile bool dropped = false;

	if (sequencer_shared != NULL)
		dboid = database_needed_alone(parsetree);
	if (!OidIsValid(dboid))
	{
		call_next_hook(pstmt, queryString, readOnlyTree, context, params,
					   queryEnv, dest, qc);
		if (sequencer_shared != NULL && drops_extension(parsetree))
			(void) stop_sequencer(MyDatabaseId, false);
		return;
	}

	claimed = stop_sequencer(dboid, true);
	PG_TRY();
	{
		call_next_hook(pstmt, queryString, readOnlyTree, context, params,
					   queryEnv, dest, qc);
		dropped = IsA(parsetree, DropdbStmt);
	}
	PG_FINALLY();
	{
		release_database(dboid, dropped || claimed);
	}
	PG_END_TRY();
	if (dropped)
		seal_due_forget_database(dboid);
}

PG_FUNCTION_INFO_V1(invoice_seq_start_sequencer);

/*
 * invoice_seq.start_sequencer(): start this database's sequencer unless it
 * runs, wait until it does (at most invoice_seq.sequencer_timeout), and
 * return its pid.  Requests start it by themselves; this saves the first
 * one the wait, and lets a test or a DBA find the process.
 */
Datum
invoice_seq_start_sequencer(PG_FUNCTION_ARGS)
{
	TimestampTz since = GetCurrentTimestamp();

	request_require_preloaded();
	for (;;)
	{
		DatabaseSequencer *db;
		pid_t		pid = 0;

		LWLockAcquire(sequencer_shared->lock, LW_EXCLUSIVE);
		db = launch_entry(MyDatabaseId);
		if (db != NULL && db->state == SEQUENCER_RUNNING)
			pid = db->pid;
		LWLockRelease(sequencer_shared->lock);
		if (db == NULL)
			launch_entry_error();
		if (pid != 0)
			PG_RETURN_INT32(pid);
		if (TimestampDifferenceExceeds(since, GetCurrentTimestamp(),
									   invoice_seq_sequencer_timeout))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("invoice_seq sequencer is not running"),
					 errhint("The sequencer of this database did not start within invoice_seq.sequencer_timeout; check the server log.")));

		launch_sequencer_if_needed(MyDatabaseId);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

void
launch_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = launch_process_utility;
}
