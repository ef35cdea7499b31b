/*-------------------------------------------------------------------------
 *
 * invoice_seq.c
 *		Module load: the settings, and the set-up of the other modules
 *		(shared memory, the sequencer, the ledger's hooks).
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
#include "ledger_am.h"
#include "pg_version_compat.h"
#include "request.h"
#include "sequencer.h"

INVOICE_SEQ_MODULE_MAGIC;


void		_PG_init(void);

/* Settings; see README.md for what each one is for. */
char	   *invoice_seq_database = NULL;
int			invoice_seq_lock_timeout = 5000;
int			invoice_seq_max_batch_size = ISEQ_MAX_BATCH;
int			invoice_seq_sequencer_timeout = 10000;
int			invoice_seq_max_periods = 1024;
char	   *invoice_seq_test_clock = NULL;
char	   *invoice_seq_ledger_archive = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void invoice_seq_shmem_request(void);
static void invoice_seq_shmem_startup(void);

void
_PG_init(void)
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
							"How long a reservation waits for a sequencer that is not running.",
							"Zero fails at once.",
							&invoice_seq_sequencer_timeout,
							10000, 0, 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("invoice_seq.test_clock",
							   "For tests only: the time at which this session's numbers are reserved, issued and voided.",
							   "Empty means the real clock.",
							   &invoice_seq_test_clock,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("invoice_seq.ledger_archive",
							   "A copy of the ledger, which lets DROP EXTENSION invoice_seq drop the ledger.",
							   "DROP EXTENSION is refused while the ledger holds numbers, unless this names a table with at least as many rows.",
							   &invoice_seq_ledger_archive,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
	{
		/* can't define PGC_POSTMASTER variables after startup */
		DefineCustomIntVariable("invoice_seq.max_periods",
								"Largest number of (series, period) pairs whose next number is kept in shared memory.",
								"Idle ones are evicted when more are needed; they are read again from the ledger on their next use.",
								&invoice_seq_max_periods,
								1024, 16, 1000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

		DefineCustomStringVariable("invoice_seq.database",
								   "Database in which the sequencer reserves invoice numbers.",
								   NULL,
								   &invoice_seq_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);
	}

	MarkGUCPrefixReserved("invoice_seq");

	/* every backend that loads the library protects ledgers */
	ledger_am_install_hooks();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = invoice_seq_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = invoice_seq_shmem_startup;

	invoice_seq_register_sequencer();
}

static void
invoice_seq_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(request_shmem_size());
	RequestAddinShmemSpace(alloc_shmem_size());
	RequestNamedLWLockTranche("invoice_seq", 2);
}

static void
invoice_seq_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	request_shmem_init();
	alloc_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

