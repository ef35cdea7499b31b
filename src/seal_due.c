/*-------------------------------------------------------------------------
 *
 * seal_due.c
 *		The chains with something new to seal; see seal_due.h.
 *
 * Why the list misses nothing that the sequencer would not find anyway.  A
 * chain is listed by the transaction that made one of its entries final,
 * once that transaction has committed: the end of transaction callback
 * runs after the transaction has left the proc array.  The sequencer takes
 * a chain off the list before it looks at the chain, in a transaction that
 * starts afterwards, so it sees every entry made final before the chain
 * was taken; an entry made final later lists the chain again.  A chain the
 * sequencer could not seal (another process held its seal lock), or left
 * with more to link, it puts back.
 *
 * What the list does not hold: entries made final outside our functions
 * (a restore, an extension script), those of a prepared transaction
 * (committed by another session), and those noted when the list was full.
 * The sequencer finds those by looking at every chain: when it starts,
 * after an overflow, and every ISEQ_SWEEP_INTERVAL_MS (sequencer.c).
 *
 * Locking.  The list is SEAL_DUE_PARTITIONS small hash tables, each under
 * a lock of its own, a chain in the one its hash names.  A committing
 * transaction takes one of them at a time, shared to find its chain
 * already listed (the common case under load: every number of one series
 * lists the same chain) and exclusive to list it.  The sequencer takes them
 * one at a time, exclusive.  No other lock is taken while one is held.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "seal_due.h"
#include "util.h"

#define SEAL_DUE_PARTITIONS		16
#define SEAL_DUE_PER_PARTITION	512

typedef struct SealDueShared
{
	int			tranche_id;
	pg_atomic_uint64 overflows; /* chains that found their table full */
	LWLock		locks[SEAL_DUE_PARTITIONS];
} SealDueShared;

static SealDueShared *seal_due_shared = NULL;
static HTAB *partitions[SEAL_DUE_PARTITIONS];

/* The chains this transaction noted, in its TopTransactionContext. */
static HTAB *noted = NULL;
static bool callback_registered = false;

/* Where this process's next seal_due_take() starts. */
static int	next_partition = 0;

static void seal_due_xact_callback(XactEvent event, void *arg);

Size
seal_due_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(SealDueShared)),
					mul_size(SEAL_DUE_PARTITIONS,
							 hash_estimate_size(SEAL_DUE_PER_PARTITION,
												sizeof(SealDueKey))));
}

/* Make (or, in an EXEC_BACKEND child, find) the tables. */
void
seal_due_shmem_init(void)
{
	bool		found;

	seal_due_shared = ShmemInitStruct("invoice_seq seal due",
									  sizeof(SealDueShared), &found);
	if (!found)
	{
		seal_due_shared->tranche_id = LWLockNewTrancheId();
		pg_atomic_init_u64(&seal_due_shared->overflows, 0);
		for (int i = 0; i < SEAL_DUE_PARTITIONS; i++)
			LWLockInitialize(&seal_due_shared->locks[i], seal_due_shared->tranche_id);
	}
	for (int i = 0; i < SEAL_DUE_PARTITIONS; i++)
	{
		HASHCTL		info;
		char		name[64];

		info.keysize = sizeof(SealDueKey);
		info.entrysize = sizeof(SealDueKey);
		snprintf(name, sizeof(name), "invoice_seq seal due %d", i);
		partitions[i] = ShmemInitHash(name, SEAL_DUE_PER_PARTITION,
									  SEAL_DUE_PER_PARTITION, &info,
									  HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
	}
}

static void
register_tranche(void)
{
	static bool registered = false;

	if (!registered)
		LWLockRegisterTranche(seal_due_shared->tranche_id, "invoice_seq_seal_due");
	registered = true;
}

/*
 * Note that this transaction made an entry of (series_id, period) final.
 * Nothing is listed unless it commits.
 */
void
seal_due_note(int32 series_id, const char *period)
{
	SealDueKey	key;

	if (seal_due_shared == NULL)
		return;					/* not preloaded: no sequencer seals */
	if (!callback_registered)
	{
		RegisterXactCallback(seal_due_xact_callback, NULL);
		callback_registered = true;
	}
	if (noted == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(SealDueKey);
		ctl.entrysize = sizeof(SealDueKey);
		ctl.hcxt = TopTransactionContext;
		noted = hash_create("invoice_seq chains noted", 16, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.ledger = invoice_seq_ledger_relid();
	key.series_id = series_id;
	strlcpy(key.period, period, sizeof(key.period));
	(void) hash_search(noted, &key, HASH_ENTER, NULL);
}

/* List a chain.  Never fails: a full table counts an overflow. */
static void
list_chain(const SealDueKey *key)
{
	uint32		hash = tag_hash(key, sizeof(SealDueKey));
	int			p = hash % SEAL_DUE_PARTITIONS;
	LWLock	   *lock = &seal_due_shared->locks[p];
	bool		listed;

	register_tranche();
	LWLockAcquire(lock, LW_SHARED);
	listed = hash_search_with_hash_value(partitions[p], key, hash,
										 HASH_FIND, NULL) != NULL;
	LWLockRelease(lock);
	if (listed)
		return;
	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (hash_search_with_hash_value(partitions[p], key, hash,
									HASH_ENTER_NULL, NULL) == NULL)
		pg_atomic_fetch_add_u64(&seal_due_shared->overflows, 1);
	LWLockRelease(lock);
}

/*
 * End of transaction: a committed one lists its chains.  This runs after
 * the commit, so it must not fail; list_chain() does not.
 */
static void
seal_due_xact_callback(XactEvent event, void *arg)
{
	HASH_SEQ_STATUS status;
	SealDueKey *key;

	if (noted == NULL)
		return;
	if (event == XACT_EVENT_COMMIT)
	{
		hash_seq_init(&status, noted);
		while ((key = hash_seq_search(&status)) != NULL)
			list_chain(key);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		noted = NULL;			/* freed with TopTransactionContext */
}

void
seal_due_put_back(const SealDueKey *key)
{
	list_chain(key);
}

/*
 * Take up to "max" listed chains of this database's ledger off the list,
 * into keys[]; returns how many.  Chains of an earlier ledger of this
 * database (a dropped extension's) are dropped.  The caller is in a
 * transaction.
 */
int
seal_due_take(SealDueKey *keys, int max)
{
	Oid			ledger = invoice_seq_ledger_relid();
	int			n = 0;

	if (seal_due_shared == NULL)
		return 0;
	register_tranche();
	for (int i = 0; i < SEAL_DUE_PARTITIONS && n < max; i++)
	{
		int			p = (next_partition + i) % SEAL_DUE_PARTITIONS;
		HASH_SEQ_STATUS status;
		SealDueKey *key;

		LWLockAcquire(&seal_due_shared->locks[p], LW_EXCLUSIVE);
		hash_seq_init(&status, partitions[p]);
		while ((key = hash_seq_search(&status)) != NULL)
		{
			if (key->dbid != MyDatabaseId)
				continue;
			if (key->ledger == ledger)
				keys[n++] = *key;
			/* removing the element just returned is allowed in a scan */
			(void) hash_search(partitions[p], key, HASH_REMOVE, NULL);
			if (n == max)
			{
				hash_seq_term(&status);
				break;
			}
		}
		LWLockRelease(&seal_due_shared->locks[p]);
	}
	next_partition = (next_partition + 1) % SEAL_DUE_PARTITIONS;
	return n;
}

/* How many chains found the list full, since the server started. */
uint64
seal_due_overflows(void)
{
	return seal_due_shared ? pg_atomic_read_u64(&seal_due_shared->overflows) : 0;
}

/* DROP DATABASE: its chains are gone. */
void
seal_due_forget_database(Oid dbid)
{
	if (seal_due_shared == NULL)
		return;
	register_tranche();
	for (int p = 0; p < SEAL_DUE_PARTITIONS; p++)
	{
		HASH_SEQ_STATUS status;
		SealDueKey *key;

		LWLockAcquire(&seal_due_shared->locks[p], LW_EXCLUSIVE);
		hash_seq_init(&status, partitions[p]);
		while ((key = hash_seq_search(&status)) != NULL)
			if (key->dbid == dbid)
				(void) hash_search(partitions[p], key, HASH_REMOVE, NULL);
		LWLockRelease(&seal_due_shared->locks[p]);
	}
}
