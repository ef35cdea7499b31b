/*-------------------------------------------------------------------------
 *
 * invoice_seq.c
 *		Module load: the settings, and the set-up of the other modules
 *		(shared memory, the ledger's and the sequencers' hooks).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "alloc.h"
#include "caller.h"
#include "launch.h"
#include "ledger_am.h"
#include "pg_version_compat.h"
#include "request.h"
#include "seal_due.h"
#include "series.h"

INVOICE_SEQ_MODULE_MAGIC;


void		_PG_init(void);

/* Settings; see README.md for what each one is for. */
int			invoice_seq_lock_timeout = 5000;
int			invoice_seq_max_batch_size = ISEQ_MAX_BATCH;
int			invoice_seq_sequencer_timeout = 10000;
int			invoice_seq_max_periods = ISEQ_DEFAULT_MAX_PERIODS;
int			invoice_seq_max_databases = 16;
int			invoice_seq_idle_timeout = 60000;
bool		invoice_seq_sealing = true;
char	   *invoice_seq_test_clock = NULL;
char	   *invoice_seq_ledger_archive = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void invoice_seq_shmem_request(void);
static void invoice_seq_shmem_startup(void);
static void define_settings(void);
static void define_server_settings(void);
static void warn_about_database_setting(void);

void
_PG_init(void)
{
	define_settings();
	if (process_shared_preload_libraries_in_progress)
		define_server_settings();
	MarkGUCPrefixReserved("invoice_seq");

	/* every backend that loads the library protects ledgers */
	ledger_am_install_hooks();
	launch_install_hooks();
	caller_install_hooks();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = invoice_seq_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = invoice_seq_shmem_startup;
}

/* The settings any backend may read, or change on a reload. */
static void
define_settings(void)
{
	DefineCustomIntVariable("invoice_seq.lock_timeout",
							"How long the sequencer waits for a lock on its tables that another transaction holds.",
							"After this time the reservation fails instead of holding up every other one.",
							&invoice_seq_lock_timeout,
							5000, 1, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invoice_seq.max_batch_size",
							"Largest number of reservations the sequencer commits in one transaction.",
							NULL,
							&invoice_seq_max_batch_size,
							ISEQ_MAX_BATCH, 1, ISEQ_MAX_BATCH,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invoice_seq.sequencer_timeout",
							"How long a reservation inside a transaction block waits for its database's sequencer to start.",
							"Zero fails unless one runs.",
							&invoice_seq_sequencer_timeout,
							10000, 0, 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("invoice_seq.idle_timeout",
							"How long a database's sequencer waits for a request before it exits.",
							"The next reservation inside a transaction block starts it again.  Zero keeps it running.",
							&invoice_seq_idle_timeout,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("invoice_seq.sealing",
							 "Whether each database's sequencer seals the hash chain in the background.",
							 "Off, chains are sealed only by chain_head(), export_series() and close_period().",
							 &invoice_seq_sealing,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("invoice_seq.test_clock",
							   "For tests only: the time at which this session's numbers are reserved, issued and voided.",
							   "Empty means the real clock.",
							   &invoice_seq_test_clock,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("invoice_seq.max_periods",
							"Idle (series, period) pairs whose next number stays cached in shared memory.",
							"A soft bound: beyond it the least recently used idle ones are evicted, and read again from the ledger on their next use; pairs in use are never refused.",
							&invoice_seq_max_periods,
							ISEQ_DEFAULT_MAX_PERIODS, 16, INT_MAX / 2,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("invoice_seq.ledger_archive",
							   "A copy of the ledger, which lets DROP EXTENSION invoice_seq drop the ledger.",
							   "DROP EXTENSION is refused while the ledger holds numbers, unless this names a table with at least as many rows.",
							   &invoice_seq_ledger_archive,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
}

/* The settings fixed at server start (only while preloading). */
static void
define_server_settings(void)
{
	/* can't define PGC_POSTMASTER variables after startup */
	DefineCustomIntVariable("invoice_seq.max_databases",
							"Largest number of databases whose sequencer runs, or whose requests wait, at once.",
							"Each running sequencer also takes one of max_worker_processes.",
							&invoice_seq_max_databases,
							16, 1, 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	warn_about_database_setting();
}

/*
 * Before 1.3, invoice_seq.database named the one database that could
 * reserve inside transaction blocks.  Every database can now.  The name
 * stays defined, hidden, so that a setting left in postgresql.conf is
 * ignored with our warning rather than removed as an unknown invoice_seq.*
 * name.
 */
static void
warn_about_database_setting(void)
{
	static char *ignored = NULL;

	DefineCustomStringVariable("invoice_seq.database",
							   "Ignored since invoice_seq 1.3.",
							   NULL,
							   &ignored,
							   "",
							   PGC_SIGHUP,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	if (ignored == NULL || ignored[0] == '\0')
		return;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
			 errmsg("invoice_seq.database is ignored"),
			 errdetail("Since invoice_seq 1.3, every database reserves with a sequencer of its own, started when needed."),
			 errhint("Remove invoice_seq.database from postgresql.conf.")));
}

static void
invoice_seq_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(request_shmem_size());
	RequestAddinShmemSpace(alloc_shmem_size());
	RequestAddinShmemSpace(series_shmem_size());
	RequestAddinShmemSpace(seal_due_shmem_size());
	RequestNamedLWLockTranche("invoice_seq", 1);
}

static void
invoice_seq_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	request_shmem_init();
	alloc_shmem_init();
	series_shmem_init();
	seal_due_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

