/*-------------------------------------------------------------------------
 *
 * alloc.c
 *		The allocator: the next number of each (series, period), and the
 *		numbers that went back, in shared memory; see alloc.h.
 *
 * Why the entry can be trusted.  Every ledger row is inserted by a
 * transaction that first took its number here, and the number stays
 * counted in the entry's "inflight" until that transaction ends (the end
 * of transaction callback runs after the transaction has left the proc
 * array).  An entry is loaded, reloaded or evicted only while inflight is
 * zero, so a snapshot taken then sees every row that will ever exist below
 * the entry's next number: next is the highest of them plus one, and the
 * numbers below it without a row are exactly the free ones.  After a crash
 * shared memory starts empty and no transaction of before is running, so
 * the same holds for the first load.
 *
 * Why a load reads only the tail.  A link of the hash chain is inserted
 * only once every lower number of its period has a final row (chain.c),
 * and no ledger row is ever deleted, so every number up to the sealed
 * chain head has a row, in every snapshot that sees the head's link.  A
 * load therefore looks for free numbers only above the head: it reads the
 * numbers sealing has not reached yet, however long the period's history.
 *
 * Storage.  The entries are a dshash table in a DSA area that starts in
 * the main shared memory and grows with dynamic shared memory segments, so
 * a transaction may hold numbers of any number of periods.  An entry is a
 * few words; its free numbers, when it has any, are an array of their own
 * in the area, grown as needed up to ISEQ_FREE_SLOTS and freed when empty.
 * Beyond invoice_seq.max_periods entries, the least recently used idle
 * ones are evicted (a soft bound: an entry in use is never evicted, and a
 * new one is always made).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/dshash.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/dsa.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "alloc.h"
#include "chain.h"
#include "pg_version_compat.h"
#include "series.h"
#include "sqlstate.h"
#include "util.h"

typedef struct AllocKey
{
	Oid			dbid;
	Oid			ledger;			/* a re-created extension starts afresh */
	int32		series_id;
	char		period[ISEQ_MAX_PERIOD + 1];
} AllocKey;

typedef enum AllocState
{
	ALLOC_LOADING,				/* being read from the ledger */
	ALLOC_READY
} AllocState;

typedef struct FreeNumber
{
	int64		invoice_no;
	TimestampTz limit;			/* see TakenNumber */
	TimestampTz dated;
} FreeNumber;

typedef struct AllocEntry
{
	AllocKey	key;			/* hash key: must be first */
	AllocState	state;
	bool		exhausted;		/* the largest number was handed out */
	bool		spilled;		/* more free numbers than the array holds */
	bool		stale;			/* the ledger has a row we did not expect */
	bool		sweep_due;		/* earlier periods' free numbers to void */
	bool		closed;			/* close_period() closed it: no more numbers */
	int32		inflight;		/* held by transactions still running */
	int64		next;			/* lowest number never handed out */
	TimestampTz last_used;		/* for eviction, least recently used first */
	TimestampTz last_at;		/* the latest real time a number was taken at */
	int32		nfree;
	int32		maxfree;		/* room in the array free points to */
	dsa_pointer free;			/* FreeNumber[maxfree], ascending; or invalid */
} AllocEntry;

/* The DSA area's first part, in the main shared memory. */
#define ALLOC_AREA_SIZE			(256 * 1024)

typedef struct AllocShared
{
	int			tranche_id;		/* the table's partition locks */
	int			area_tranche_id;	/* the area's own lock */
	dshash_table_handle handle;
	ConditionVariable loaded;	/* an entry left state LOADING */
	pg_atomic_uint32 nentries;
	pg_atomic_flag evicting;	/* one process evicts at a time */
	/* the DSA area follows, MAXALIGNed */
} AllocShared;

#define ALLOC_AREA(shared) \
	((void *) ((char *) (shared) + MAXALIGN(sizeof(AllocShared))))

/* A number held by this process's transaction. */
typedef struct Holding
{
	AllocKey	key;
	int64		invoice_no;
	TimestampTz limit;
	TimestampTz dated;
	SubTransactionId subid;
	bool		forget;			/* do not give it back: the ledger has it */
	bool		swept;			/* its transaction voided earlier periods */
} Holding;

static AllocShared *alloc_shared = NULL;
static dsa_area *alloc_area = NULL;
static dshash_table *alloc_hash = NULL;

static Holding *holdings = NULL;
static int	nholdings = 0;
static int	maxholdings = 0;

/* A period this transaction closed: closed for everyone once it commits. */
typedef struct Closing
{
	AllocKey	key;
	SubTransactionId subid;
} Closing;

static Closing *closings = NULL;
static int	nclosings = 0;
static int	maxclosings = 0;
static bool callbacks_registered = false;

static SPIPlanPtr last_plan = NULL;
static SPIPlanPtr holes_plan = NULL;

static bool closed_here(const AllocKey *key);
static void alloc_xact_callback(XactEvent event, void *arg);
static void alloc_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);

Size
alloc_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(AllocShared)), ALLOC_AREA_SIZE);
}

static dshash_parameters
table_parameters(void)
{
	dshash_parameters params = {
		.key_size = sizeof(AllocKey),
		.entry_size = sizeof(AllocEntry),
		.compare_function = dshash_memcmp,
		.hash_function = dshash_memhash,
		DSHASH_COPY_FUNCTION(dshash_memcpy)
		.tranche_id = alloc_shared->tranche_id,
	};

	return params;
}

/*
 * Make the table, in the postmaster (or a single-user backend).  Its first
 * buckets must fit in the area's part in the main shared memory: no
 * process but the postmaster's children should map segments.
 */
void
alloc_shmem_init(void)
{
	bool		found;
	dsa_area   *area;
	dshash_table *table;
	dshash_parameters params;

	alloc_shared = ShmemInitStruct("invoice_seq allocator", alloc_shmem_size(),
								   &found);
	if (found)
		return;
	alloc_shared->tranche_id = LWLockNewTrancheId();
	alloc_shared->area_tranche_id = LWLockNewTrancheId();
	ConditionVariableInit(&alloc_shared->loaded);
	pg_atomic_init_u32(&alloc_shared->nentries, 0);
	pg_atomic_init_flag(&alloc_shared->evicting);

	area = dsa_create_in_place(ALLOC_AREA(alloc_shared), ALLOC_AREA_SIZE,
							   alloc_shared->area_tranche_id, NULL);
	dsa_pin(area);
	dsa_set_size_limit(area, ALLOC_AREA_SIZE);
	params = table_parameters();
	table = dshash_create(area, &params, NULL);
	alloc_shared->handle = dshash_get_hash_table_handle(table);
	dsa_set_size_limit(area, -1);
	dshash_detach(table);
	dsa_detach(area);
}

/* Attach this process to the table, once. */
static void
attach_table(void)
{
	MemoryContext old;
	dshash_parameters params;

	if (alloc_hash != NULL)
		return;
	LWLockRegisterTranche(alloc_shared->tranche_id, "invoice_seq_alloc");
	LWLockRegisterTranche(alloc_shared->area_tranche_id, "invoice_seq_alloc_area");
	old = MemoryContextSwitchTo(TopMemoryContext);
	alloc_area = dsa_attach_in_place(ALLOC_AREA(alloc_shared), NULL);
	on_shmem_exit(dsa_on_shmem_exit_release_in_place,
				  PointerGetDatum(ALLOC_AREA(alloc_shared)));
	dsa_pin_mapping(alloc_area);
	params = table_parameters();
	alloc_hash = dshash_attach(alloc_area, &params, alloc_shared->handle, NULL);
	MemoryContextSwitchTo(old);
}

static void
make_key(AllocKey *key, int32 series_id, const char *period)
{
	attach_table();
	memset(key, 0, sizeof(AllocKey));
	key->dbid = MyDatabaseId;
	key->ledger = invoice_seq_ledger_relid();
	key->series_id = series_id;
	strlcpy(key->period, period, sizeof(key->period));
}

/* An entry's free numbers, in the area. */
static inline FreeNumber *
free_numbers(const AllocEntry *entry)
{
	return entry->maxfree == 0 ? NULL :
		(FreeNumber *) dsa_get_address(alloc_area, entry->free);
}

/* Drop an entry's free numbers and their room. */
static void
drop_free_numbers(AllocEntry *entry)
{
	if (entry->maxfree > 0)
		dsa_free(alloc_area, entry->free);
	entry->free = InvalidDsaPointer;
	entry->nfree = entry->maxfree = 0;
}

/*
 * Room for one more free number; false if the area has none to give (the
 * number is then forgotten, and found again by a reload).  Never fails:
 * it runs at the end of transactions.
 */
static bool
grow_free_numbers(AllocEntry *entry)
{
	int			newmax;
	dsa_pointer p;

	if (entry->nfree < entry->maxfree)
		return true;
	if (entry->maxfree == ISEQ_FREE_SLOTS)
		return false;
	newmax = entry->maxfree == 0 ? 8 : Min(entry->maxfree * 2, ISEQ_FREE_SLOTS);
	p = dsa_allocate_extended(alloc_area, sizeof(FreeNumber) * newmax,
							  DSA_ALLOC_NO_OOM);
	if (!DsaPointerIsValid(p))
		return false;
	if (entry->nfree > 0)
		memcpy(dsa_get_address(alloc_area, p), free_numbers(entry),
			   sizeof(FreeNumber) * entry->nfree);
	if (entry->maxfree > 0)
		dsa_free(alloc_area, entry->free);
	entry->free = p;
	entry->maxfree = newmax;
	return true;
}

/* Remove the i-th free number of an entry. */
static void
remove_free_number(AllocEntry *entry, int i)
{
	FreeNumber *free = free_numbers(entry);

	entry->nfree--;
	memmove(&free[i], &free[i + 1], sizeof(FreeNumber) * (entry->nfree - i));
	if (entry->nfree == 0)
		drop_free_numbers(entry);
}

/* Compare two last-use times, for qsort. */
static int
cmp_timestamps(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a;
	TimestampTz y = *(const TimestampTz *) b;

	return (x > y) - (x < y);
}

/*
 * The last-use time below which idle entries are evicted, so that a
 * quarter of the bound is free again; 0 if none need be.
 */
static TimestampTz
eviction_cutoff(int bound)
{
	dshash_seq_status status;
	AllocEntry *entry;
	TimestampTz *times;
	int			n = 0;
	int			max = pg_atomic_read_u32(&alloc_shared->nentries) + 64;
	int			excess;
	TimestampTz cutoff = 0;

	times = palloc_extended(sizeof(TimestampTz) * max, MCXT_ALLOC_NO_OOM);
	if (times == NULL)
		return 0;
	dshash_seq_init(&status, alloc_hash, false);
	while ((entry = dshash_seq_next(&status)) != NULL && n < max)
		if (entry->state == ALLOC_READY && entry->inflight == 0)
			times[n++] = entry->last_used;
	dshash_seq_term(&status);

	excess = (int) pg_atomic_read_u32(&alloc_shared->nentries) - bound * 3 / 4;
	if (excess > 0 && n > 0)
	{
		qsort(times, n, sizeof(TimestampTz), cmp_timestamps);
		cutoff = times[Min(excess, n) - 1] + 1;
	}
	pfree(times);
	return cutoff;
}

/* Evict the idle entries last used before cutoff. */
static void
evict_before(TimestampTz cutoff)
{
	dshash_seq_status status;
	AllocEntry *entry;

	dshash_seq_init(&status, alloc_hash, true);
	while ((entry = dshash_seq_next(&status)) != NULL)
	{
		if (entry->state != ALLOC_READY || entry->inflight > 0 ||
			entry->last_used >= cutoff)
			continue;
		drop_free_numbers(entry);
		dshash_delete_current(&status);
		pg_atomic_fetch_sub_u32(&alloc_shared->nentries, 1);
	}
	dshash_seq_term(&status);
}

/*
 * Past invoice_seq.max_periods entries, evict the least recently used idle
 * ones, down to three quarters of it.  One process at a time does it; the
 * others go on.  Nothing in it can fail, so the flag is always cleared.
 * The caller holds no entry.
 */
static void
evict_if_needed(void)
{
	TimestampTz cutoff;

	if (pg_atomic_read_u32(&alloc_shared->nentries) <= (uint32) invoice_seq_max_periods ||
		!pg_atomic_test_set_flag(&alloc_shared->evicting))
		return;
	cutoff = eviction_cutoff(invoice_seq_max_periods);
	if (cutoff != 0)
		evict_before(cutoff);
	pg_atomic_clear_flag(&alloc_shared->evicting);
}

/* Drop an entry whose load failed, and wake whoever waits for it. */
static void
load_failed(int code, Datum arg)
{
	AllocKey   *key = (AllocKey *) DatumGetPointer(arg);
	AllocEntry *entry = dshash_find(alloc_hash, key, true);

	if (entry != NULL)
	{
		drop_free_numbers(entry);
		dshash_delete_entry(alloc_hash, entry);
		pg_atomic_fetch_sub_u32(&alloc_shared->nentries, 1);
	}
	ConditionVariableBroadcast(&alloc_shared->loaded);
}
/* Below this many numbers, read_holes() scans instead of counting more. */
#define ISEQ_HOLE_SCAN			4096

/* Parameters of the statements that read one period of the ledger. */
enum
{
	PERIOD_SERIES = 0,
	PERIOD_PERIOD,
	PERIOD_FROM,
	PERIOD_TO,					/* or, for holes_plan, how many rows */
	PERIOD_NPARAMS
};

static SPIPlanPtr count_plan = NULL;

/*
 * Run one of the statements on a period of the ledger, from "from" to "to".
 * The caller is connected to SPI as the extension's owner.
 */
static void
read_period(SPIPlanPtr *cache, const char *sql, const InvoiceSeries *series,
			const char *period, int64 from, int64 to, const char *what)
{
	Oid			argtypes[PERIOD_NPARAMS] = {INT4OID, TEXTOID, INT8OID, INT8OID};
	Datum		values[PERIOD_NPARAMS];
	SPIPlanPtr	plan = invoice_seq_plan(cache, sql, PERIOD_NPARAMS, argtypes);
	int			rc;

	values[PERIOD_SERIES] = Int32GetDatum(series->id);
	values[PERIOD_PERIOD] = CStringGetTextDatum(period);
	values[PERIOD_FROM] = Int64GetDatum(from);
	values[PERIOD_TO] = Int64GetDatum(to);
	rc = invoice_seq_execute(plan, values, NULL, false, 0);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, what);
}

/* The first value of the first row SPI returned. */
static int64
first_int64(void)
{
	bool		isnull;

	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/* How many numbers from "from" to "to" have a row. */
static int64
count_rows(const InvoiceSeries *series, const char *period, int64 from, int64 to)
{
	read_period(&count_plan,
				"SELECT count(*) FROM invoice_seq.ledger_entry"
				" WHERE series_id OPERATOR(pg_catalog.=) $1"
				" AND period OPERATOR(pg_catalog.=) $2"
				" AND invoice_no OPERATOR(pg_catalog.>=) $3"
				" AND invoice_no OPERATOR(pg_catalog.<=) $4",
				series, period, from, to, "counting numbers");
	return first_int64();
}

/*
 * Is a number from "lo" to "last" without a row?  Every number below lo
 * has one.  If so, *from is a number below which every one has a row, as
 * high as a few index-only counts find it.  After a crash the holes are
 * the numbers that were in flight, near the top, so this keeps the scan
 * for them short when sealing lags.
 */
static bool
first_hole_bound(const InvoiceSeries *series, const char *period, int64 lo,
				 int64 last, int64 *from)
{
	int64		hi = last;

	if (count_rows(series, period, lo, hi) == hi - lo + 1)
		return false;
	/* every number below lo has a row; [lo, hi] has a hole */
	while (hi - lo > ISEQ_HOLE_SCAN)
	{
		int64		mid = lo + (hi - lo) / 2;

		if (count_rows(series, period, lo, mid) < mid - lo + 1)
			hi = mid;
		else
			lo = mid + 1;
	}
	*from = lo;
	return true;
}

/* What a load read from the ledger, before it goes into the entry. */
typedef struct LoadedState
{
	const char *period;
	int64		next;
	bool		exhausted;
	bool		closed;
	bool		spilled;
	int			nfree;
	FreeNumber	free[ISEQ_FREE_SLOTS];	/* ascending */
} LoadedState;

/*
 * The first ISEQ_FREE_SLOTS numbers without a row from "from" on.  Each has
 * a limit, the latest time at which it may be issued without breaking
 * chronological order: the earliest of the issue times of the numbers
 * above it and the reservation times of those still reserved, as a
 * reservation may be confirmed at any time from then on, before the hole
 * is taken again (none if no number above it is issued or reserved: a void
 * carries the time of its voiding, not of its number).  This is what a
 * free number kept in memory has, its own take time, which no number above
 * it precedes.  The time it was taken is not known: it is dated by the
 * start of its period, to render it as a void.  Every number below "from"
 * has a row.
 */
static void
read_holes(const InvoiceSeries *series, LoadedState *loaded, int64 from)
{
	uint64		i;
	TimestampTz period_start = series_period_start(series, loaded->period);

	read_period(&holes_plan,
				"SELECT g.n, e.limit_at FROM"
				" (SELECT invoice_no,"
				"         pg_catalog.lag(invoice_no) OVER (ORDER BY invoice_no) AS prev,"
				"         pg_catalog.min(CASE"
				"             WHEN status OPERATOR(pg_catalog.=) 'issued' THEN confirmed_at"
				"             WHEN status OPERATOR(pg_catalog.=) 'reserved' THEN reserved_at END)"
				"             OVER (ORDER BY invoice_no DESC) AS limit_at"
				"  FROM invoice_seq.ledger_entry"
				"  WHERE series_id OPERATOR(pg_catalog.=) $1"
				"  AND period OPERATOR(pg_catalog.=) $2"
				"  AND invoice_no OPERATOR(pg_catalog.>=) $3) e,"
				" pg_catalog.generate_series(COALESCE(e.prev OPERATOR(pg_catalog.+) 1, $3),"
				"                            e.invoice_no OPERATOR(pg_catalog.-) 1) AS g(n)"
				" ORDER BY g.n LIMIT $4",
				series, loaded->period, from, ISEQ_FREE_SLOTS + 1,
				"finding the free numbers");
	for (i = 0; i < SPI_processed && i < ISEQ_FREE_SLOTS; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		FreeNumber *f = &loaded->free[i];
		bool		isnull;
		Datum		limit;

		f->invoice_no = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		limit = SPI_getbinval(row, desc, 2, &isnull);
		if (isnull)
			TIMESTAMP_NOEND(f->limit);
		else
			f->limit = DatumGetTimestampTz(limit);
		f->dated = period_start;
	}
	loaded->nfree = (int) i;
	loaded->spilled = (SPI_processed > ISEQ_FREE_SLOTS);
}

/*
 * Read an entry's state from the ledger: the highest number, and the
 * numbers without a row below it, looked for above the sealed chain head
 * only (see the head of this file).  The caller is connected to SPI as the
 * extension's owner, and no transaction holds a number of the entry.
 */
static void
load_from_ledger(const InvoiceSeries *series, LoadedState *loaded)
{
	ChainHead	head;
	int64		last;
	int64		from;

	loaded->closed = invoice_seq_period_closed(series->id, loaded->period);

	read_period(&last_plan,
				"SELECT invoice_no FROM invoice_seq.ledger_entry"
				" WHERE series_id OPERATOR(pg_catalog.=) $1"
				" AND period OPERATOR(pg_catalog.=) $2"
				" AND invoice_no OPERATOR(pg_catalog.>=) $3"
				" AND invoice_no OPERATOR(pg_catalog.<=) $4"
				" ORDER BY invoice_no DESC LIMIT 1",
				series, loaded->period, series->start_at, PG_INT64_MAX,
				"finding the last number");
	if (SPI_processed == 0)
	{
		loaded->next = series->start_at;
		return;
	}
	last = first_int64();
	/* past the largest number, next stays there: alloc_take refuses it */
	loaded->exhausted = (last == PG_INT64_MAX);
	loaded->next = loaded->exhausted ? last : last + 1;

	chain_head(series->id, loaded->period, &head);
	from = series->start_at;
	if (head.sealed && head.invoice_no >= from)
	{
		if (head.invoice_no >= last)
			return;
		from = head.invoice_no + 1;
	}
	if (first_hole_bound(series, loaded->period, from, last, &from))
		read_holes(series, loaded, from);
}

/* Put what a load read into its entry.  Returns false if out of memory. */
static bool
fill_entry(AllocEntry *entry, const LoadedState *loaded)
{
	drop_free_numbers(entry);
	if (loaded->nfree > 0)
	{
		entry->free = dsa_allocate_extended(alloc_area,
											sizeof(FreeNumber) * loaded->nfree,
											DSA_ALLOC_NO_OOM);
		if (!DsaPointerIsValid(entry->free))
			return false;
		entry->maxfree = entry->nfree = loaded->nfree;
		memcpy(free_numbers(entry), loaded->free,
			   sizeof(FreeNumber) * loaded->nfree);
	}
	entry->next = loaded->next;
	entry->exhausted = loaded->exhausted;
	entry->spilled = loaded->spilled;
	entry->closed = loaded->closed;
	entry->stale = false;
	entry->sweep_due = true;
	entry->last_used = GetCurrentTimestamp();
	entry->state = ALLOC_READY;
	return true;
}

/*
 * Load (or reload) the entry for key, which the caller has marked LOADING
 * and whose lock it has released.
 */
static void
load_entry(const InvoiceSeries *series, const AllocKey *key)
{
	LoadedState *loaded = palloc0(sizeof(LoadedState));
	AllocEntry *entry;

	loaded->period = key->period;
	PG_ENSURE_ERROR_CLEANUP(load_failed, PointerGetDatum(key));
	{
		load_from_ledger(series, loaded);
		entry = dshash_find(alloc_hash, key, true);
		Assert(entry != NULL && entry->state == ALLOC_LOADING);
		if (!fill_entry(entry, loaded))
		{
			dshash_release_lock(alloc_hash, entry);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of shared memory for invoice_seq's free numbers")));
		}
		dshash_release_lock(alloc_hash, entry);
	}
	PG_END_ENSURE_ERROR_CLEANUP(load_failed, PointerGetDatum(key));
	pfree(loaded);
	ConditionVariableBroadcast(&alloc_shared->loaded);
}

/*
 * Find the entry of key, ready to hand out a number, loading it if needed,
 * and return it locked (its partition lock held exclusively).
 */
static AllocEntry *
ready_entry(const InvoiceSeries *series, const AllocKey *key)
{
	evict_if_needed();
	for (;;)
	{
		bool		found;
		AllocEntry *entry = dshash_find_or_insert(alloc_hash, key, &found);

		if (!found)
		{
			memset(((char *) entry) + sizeof(AllocKey), 0,
				   sizeof(AllocEntry) - sizeof(AllocKey));
			entry->free = InvalidDsaPointer;
			pg_atomic_fetch_add_u32(&alloc_shared->nentries, 1);
		}
		else if (entry->state == ALLOC_LOADING)
		{
			dshash_release_lock(alloc_hash, entry);
			ConditionVariableSleep(&alloc_shared->loaded, PG_WAIT_EXTENSION);
			continue;
		}
		else if (entry->inflight > 0 ||
				 !(entry->stale || (entry->spilled && entry->nfree == 0)))
		{
			ConditionVariableCancelSleep();
			return entry;
		}

		/* new, or idle and worth reading again */
		entry->state = ALLOC_LOADING;
		dshash_release_lock(alloc_hash, entry);
		load_entry(series, key);
	}
}
static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(alloc_xact_callback, NULL);
	RegisterSubXactCallback(alloc_subxact_callback, NULL);
	callbacks_registered = true;
}

/* Make sure remember() has room for one more holding. */
static void
reserve_holding_room(void)
{
	register_callbacks();
	if (nholdings < maxholdings)
		return;
	maxholdings = Max(16, maxholdings * 2);
	holdings = holdings == NULL ?
		MemoryContextAlloc(TopMemoryContext, sizeof(Holding) * maxholdings) :
		repalloc(holdings, sizeof(Holding) * maxholdings);
}

/* Remember that this transaction holds a number until it ends. */
static void
remember(const AllocKey *key, const TakenNumber *taken)
{
	Holding    *h;

	Assert(nholdings < maxholdings);
	h = &holdings[nholdings++];
	h->key = *key;
	h->invoice_no = taken->invoice_no;
	h->limit = taken->limit;
	h->dated = taken->dated;
	h->subid = GetCurrentSubTransactionId();
	h->forget = false;
	h->swept = false;
}

/*
 * When a number is taken: the real clock, read now, under the allocator's
 * lock, so that numbers and their times rise together whatever the caller
 * waited for before (a lock, a load); and never before the entry's last
 * take, so that a clock stepped back cannot date a number before a lower
 * one.  A test clock (invoice_seq.test_clock) is taken as it is: tests set
 * the times they need.
 */
static TimestampTz
take_time(AllocEntry *entry, TimestampTz clock)
{
	TimestampTz at = GetCurrentTimestamp();

	entry->last_used = at;
	if (clock != 0)
		return clock;
	if (at < entry->last_at)
		at = entry->last_at;
	entry->last_at = at;
	return at;
}

/*
 * Hand out the lowest free number of an entry, else its next one, at "at".
 * Caller holds the entry's lock; the entry is not exhausted.
 */
static void
take_from(AllocEntry *entry, TimestampTz at, TakenNumber *taken)
{
	taken->at = at;
	taken->sweep_due = entry->sweep_due;
	if (entry->nfree > 0)
	{
		FreeNumber *first = &free_numbers(entry)[0];

		taken->invoice_no = first->invoice_no;
		taken->limit = first->limit;
		taken->dated = first->dated;
		taken->recycled = true;
		remove_free_number(entry, 0);
	}
	else
	{
		taken->invoice_no = entry->next;
		taken->limit = taken->dated = at;
		taken->recycled = false;
		if (entry->next == PG_INT64_MAX)
			entry->exhausted = true;
		else
			entry->next++;
	}
	entry->inflight++;
}

/* Release an entry's lock, then raise the error of a closed period. */
static pg_noreturn void
period_closed_error(AllocEntry *entry, const InvoiceSeries *series,
					const char *period)
{
	if (entry != NULL)
		dshash_release_lock(alloc_hash, entry);
	ereport(ERROR,
			(errcode(ERRCODE_ISEQ_PERIOD_CLOSED),
			 errmsg("%s is closed", period_label(series->name, period)),
			 errdetail("invoice_seq.close_period() closed it; it takes no more numbers.")));
}

/*
 * Take a number of (series, period) for the current transaction: the lowest
 * free one, else the next one.  It is held until the transaction ends, and
 * given back if the (sub)transaction that took it aborts.  The caller is
 * connected to SPI as the extension's owner (a first use reads the ledger)
 * and holds the series lock.
 *
 * Returns false, taking nothing, if the period has ended (period_end has
 * passed) while the caller waited; taken->at then says when it is now.
 */
bool
alloc_take(const InvoiceSeries *series, const char *period,
		   TimestampTz period_end, TimestampTz clock, TakenNumber *taken)
{
	AllocKey	key;
	AllocEntry *entry;

	make_key(&key, series->id, period);

	/* room for the holding first: nothing may fail once we took it */
	reserve_holding_room();

	if (closed_here(&key))
		period_closed_error(NULL, series, period);
	entry = ready_entry(series, &key);
	if (entry->closed)
		period_closed_error(entry, series, period);
	if (entry->nfree == 0 && entry->exhausted)
	{
		dshash_release_lock(alloc_hash, entry);
		ereport(ERROR,
				(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
				 errmsg("invoice series \"%s\" has reached the largest invoice number, " INT64_FORMAT,
						series->name, PG_INT64_MAX),
				 errhint("Create a new series.")));
	}
	taken->at = take_time(entry, clock);
	if (taken->at >= period_end)
	{
		dshash_release_lock(alloc_hash, entry);
		return false;
	}
	take_from(entry, taken->at, taken);
	remember(&key, taken);
	dshash_release_lock(alloc_hash, entry);
	return true;
}

/* The position of invoice_no among an entry's free numbers, or -1. */
static int
find_free_number(const AllocEntry *entry, int64 invoice_no)
{
	FreeNumber *free = free_numbers(entry);

	for (int i = 0; i < entry->nfree; i++)
		if (free[i].invoice_no == invoice_no)
			return i;
	return -1;
}

/*
 * Take one given number of (series, period) for the current transaction,
 * to void it; *taken is filled.  It must be free: listed in the entry's
 * free set, or, with all_free, any number the caller found without a row:
 * the caller (close_period) holds the series lock exclusively, so no other
 * transaction holds a number of the series.  Returns false if it is not
 * free.
 */
bool
alloc_claim(const InvoiceSeries *series, const char *period, int64 invoice_no,
			bool all_free, TakenNumber *taken)
{
	AllocKey	key;
	AllocEntry *entry;
	int			i;

	make_key(&key, series->id, period);
	reserve_holding_room();

	entry = ready_entry(series, &key);
	i = find_free_number(entry, invoice_no);
	/* a sweep leaves what is not listed, and closed periods, alone */
	if (!all_free && (i < 0 || entry->closed))
	{
		dshash_release_lock(alloc_hash, entry);
		return false;
	}
	memset(taken, 0, sizeof(TakenNumber));
	taken->invoice_no = invoice_no;
	taken->recycled = true;
	if (i >= 0)
	{
		taken->limit = free_numbers(entry)[i].limit;
		taken->dated = free_numbers(entry)[i].dated;
		remove_free_number(entry, i);
	}
	entry->inflight++;
	entry->last_used = GetCurrentTimestamp();
	remember(&key, taken);
	/* not listed: if the claim aborts, the period is read again instead */
	holdings[nholdings - 1].forget = (i < 0);
	dshash_release_lock(alloc_hash, entry);
	return true;
}

/*
 * Put a number back into its entry's free set (or below its next number).
 * Caller holds the entry's lock.
 */
static void
put_back(AllocEntry *entry, const Holding *h)
{
	int64		invoice_no = h->invoice_no;
	FreeNumber *free;
	int			pos;

	if (entry->exhausted ? invoice_no == PG_INT64_MAX : invoice_no == entry->next - 1)
	{
		/* the highest number handed out: it, and free ones below, are next */
		if (entry->exhausted)
			entry->exhausted = false;	/* next is still the largest number */
		else
			entry->next--;
		while (entry->nfree > 0 &&
			   free_numbers(entry)[entry->nfree - 1].invoice_no == entry->next - 1)
		{
			remove_free_number(entry, entry->nfree - 1);
			entry->next--;
		}
		return;
	}

	if (!grow_free_numbers(entry))
	{
		/* the highest free number is forgotten; a reload finds it again */
		entry->spilled = true;
		if (entry->nfree == 0 ||
			free_numbers(entry)[entry->nfree - 1].invoice_no < invoice_no)
			return;
		entry->nfree--;
	}
	free = free_numbers(entry);
	for (pos = entry->nfree; pos > 0; pos--)
		if (free[pos - 1].invoice_no < invoice_no)
			break;
	memmove(&free[pos + 1], &free[pos], sizeof(FreeNumber) * (entry->nfree - pos));
	free[pos].invoice_no = invoice_no;
	free[pos].limit = h->limit;
	free[pos].dated = h->dated;
	entry->nfree++;
}

/*
 * A transaction (or subtransaction) that held numbers ended: release the
 * holdings from index "from" on, giving the numbers back if it aborted.
 * Runs in end-of-transaction callbacks, so it must not fail.
 */
static void
release_holdings(int from, bool aborted)
{
	for (int i = from; i < nholdings; i++)
	{
		Holding    *h = &holdings[i];
		AllocEntry *entry = dshash_find(alloc_hash, &h->key, true);

		/* an entry with numbers in flight is never evicted */
		Assert(entry != NULL && entry->inflight > 0);
		if (entry == NULL)
			continue;
		entry->inflight--;
		if (aborted && !h->forget)
			put_back(entry, h);
		else if (aborted)
			entry->stale = true;	/* the ledger knows better than we do */
		if (!aborted && h->swept)
			entry->sweep_due = false;
		dshash_release_lock(alloc_hash, entry);
	}
}
/*
 * This transaction voided the free numbers of the periods before (series,
 * period): once it commits, takers of that period need not look again.
 */
void
alloc_sweep_done(const InvoiceSeries *series, const char *period)
{
	AllocKey	key;
	int			i;

	make_key(&key, series->id, period);
	for (i = nholdings - 1; i >= 0; i--)
	{
		if (memcmp(&holdings[i].key, &key, sizeof(AllocKey)) == 0)
		{
			holdings[i].swept = true;
			break;
		}
	}
}

/*
 * This transaction closed (series, period) (close_period()): it takes no
 * more numbers of it, and once the transaction commits, nobody does.  Until
 * then the shared entry is left alone, so that a rollback leaves the period
 * open.
 */
void
alloc_close_at_commit(const InvoiceSeries *series, const char *period)
{
	register_callbacks();
	if (nclosings == maxclosings)
	{
		maxclosings = Max(4, maxclosings * 2);
		closings = closings == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(Closing) * maxclosings) :
			repalloc(closings, sizeof(Closing) * maxclosings);
	}
	make_key(&closings[nclosings].key, series->id, period);
	closings[nclosings].subid = GetCurrentSubTransactionId();
	nclosings++;
}

/* Did this transaction close the period of key? */
static bool
closed_here(const AllocKey *key)
{
	for (int i = 0; i < nclosings; i++)
		if (memcmp(&closings[i].key, key, sizeof(AllocKey)) == 0)
			return true;
	return false;
}

/* The closing transaction committed: its periods are closed. */
static void
apply_closings(void)
{
	for (int i = 0; i < nclosings; i++)
	{
		AllocEntry *entry = dshash_find(alloc_hash, &closings[i].key, true);

		/* an entry read later finds the closing in the ledger */
		if (entry != NULL)
		{
			entry->closed = true;
			dshash_release_lock(alloc_hash, entry);
		}
	}
}

/*
 * The ledger already has a row with a number this transaction took (put
 * there by hand, or by a restore): do not hand it out again, and read the
 * entry again once it is idle.
 */
void
alloc_forget(const InvoiceSeries *series, const char *period, int64 invoice_no)
{
	AllocKey	key;
	AllocEntry *entry;
	int			i;

	make_key(&key, series->id, period);
	for (i = nholdings - 1; i >= 0; i--)
	{
		if (holdings[i].invoice_no == invoice_no &&
			memcmp(&holdings[i].key, &key, sizeof(AllocKey)) == 0)
		{
			holdings[i].forget = true;
			break;
		}
	}
	entry = dshash_find(alloc_hash, &key, true);
	if (entry != NULL)
	{
		entry->stale = true;
		dshash_release_lock(alloc_hash, entry);
	}
}


/*
 * End of transaction.  A prepared transaction could hold a number for any
 * length of time, decided outside the session that took it, so PREPARE is
 * refused while numbers are held; and its closings would take effect in
 * another session, so PREPARE is refused after close_period() too.
 */
static void
alloc_xact_callback(XactEvent event, void *arg)
{
	if (nholdings == 0 && nclosings == 0)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (nholdings > 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("cannot PREPARE a transaction that took an invoice number with next_invoice_no()"),
						 errdetail("Holding a one-step invoice number across two-phase commit is not supported."),
						 errhint("Use reserve_invoice_no() and confirm_invoice_no() in transactions that are prepared.")));
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot PREPARE a transaction that closed a period with close_period()"),
					 errdetail("Closing a period across two-phase commit is not supported.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (nholdings > 0)
				release_holdings(0, false);
			if (nclosings > 0)
				apply_closings();
			nholdings = nclosings = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (nholdings > 0)
				release_holdings(0, true);
			nholdings = nclosings = 0;
			break;
		default:
			break;
	}
}

/*
 * End of a subtransaction: a commit hands its numbers and closings to the
 * parent, an abort gives the numbers back and forgets the closings.
 * Holdings and closings are in the order they were made, and a
 * subtransaction's children end before it, so its own are the tails.
 */
static void
alloc_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			first = nholdings;
	int			first_closing = nclosings;

	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	while (first > 0 && holdings[first - 1].subid == mySubid)
		first--;
	while (first_closing > 0 && closings[first_closing - 1].subid == mySubid)
		first_closing--;

	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = first; i < nholdings; i++)
			holdings[i].subid = parentSubid;
		for (int i = first_closing; i < nclosings; i++)
			closings[i].subid = parentSubid;
		return;
	}
	if (first < nholdings)
		release_holdings(first, true);
	nholdings = first;
	nclosings = first_closing;
}

/* One entry as alloc_view() copied it. */
typedef struct ViewEntry
{
	int32		series_id;		/* hash key: series and period */
	char		period[ISEQ_MAX_PERIOD + 1];
	bool		loading;
	bool		spilled;
	bool		busy;			/* numbers held by running transactions */
	int64		next;
	int			nfree;
	int64	   *free;			/* ascending */
} ViewEntry;

/*
 * The allocator's entries of some series in this database, as they were at
 * one moment, copied out of shared memory: what alloc_hole_kind() judges
 * the holes of a snapshot by.
 */
struct AllocView
{
	HTAB	   *entries;
};

/* Copy one entry into the view.  Caller holds the lock. */
static void
view_add(AllocView *view, const AllocEntry *entry)
{
	ViewEntry	probe;
	ViewEntry  *v;
	bool		found;
	FreeNumber *free = free_numbers(entry);

	memset(&probe, 0, sizeof(probe));
	probe.series_id = entry->key.series_id;
	strlcpy(probe.period, entry->key.period, sizeof(probe.period));
	v = hash_search(view->entries, &probe, HASH_ENTER, &found);
	v->loading = (entry->state == ALLOC_LOADING);
	v->spilled = entry->spilled;
	v->busy = (entry->inflight > 0);
	v->next = entry->next;
	v->nfree = entry->nfree;
	v->free = palloc(sizeof(int64) * Max(entry->nfree, 1));
	for (int i = 0; i < entry->nfree; i++)
		v->free[i] = free[i].invoice_no;
}

/*
 * The view of the entries of a series (or, with series_id < 0, of every
 * series) of this database's ledger, made in the current memory context.
 * The entries are read one partition at a time: each is as it was at some
 * moment, which is all alloc_hole_kind() needs (it judges a hole by one
 * entry, read before and after the snapshot).
 */
AllocView *
alloc_view(int32 series_id)
{
	AllocView  *view = palloc(sizeof(AllocView));
	HASHCTL		info;
	dshash_seq_status status;
	AllocEntry *entry;
	Oid			ledger;

	info.keysize = offsetof(ViewEntry, loading);
	info.entrysize = sizeof(ViewEntry);
	info.hcxt = CurrentMemoryContext;
	view->entries = hash_create("invoice_seq allocator view", 64, &info,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	if (alloc_shared == NULL)
		return view;

	attach_table();
	ledger = invoice_seq_ledger_relid();
	dshash_seq_init(&status, alloc_hash, false);
	while ((entry = dshash_seq_next(&status)) != NULL)
	{
		if (entry->key.dbid != MyDatabaseId || entry->key.ledger != ledger ||
			(series_id >= 0 && entry->key.series_id != series_id))
			continue;
		view_add(view, entry);
	}
	dshash_seq_term(&status);
	return view;
}

static const ViewEntry *
view_find(const AllocView *view, int32 series_id, const char *period)
{
	ViewEntry	probe;

	memset(&probe, 0, sizeof(probe));
	probe.series_id = series_id;
	strlcpy(probe.period, period, sizeof(probe.period));
	return hash_search(view->entries, &probe, HASH_FIND, NULL);
}

/*
 * What a number without a ledger row in a snapshot is, below the highest
 * one of its period: free (handed out again next), perhaps in flight (a
 * running transaction may hold it), or lost.  "before" was read before the
 * snapshot was taken, "after" (if not NULL) after it.
 *
 * A number below before's next, neither free nor held then, had its row
 * committed before the snapshot: if the snapshot has no row, it is lost.
 * One at or above before's next was handed out since, if it is below
 * after's next: it may be in flight.  One above after's next was never
 * handed out: it lies below a row put in the ledger by hand, and is lost.
 * An entry that was not loaded, or was being loaded, had nothing in flight,
 * so its holes are free; one whose free numbers spilled cannot tell, and
 * says free.
 */
HoleKind
alloc_hole_kind(const AllocView *before, const AllocView *after,
				int32 series_id, const char *period, int64 invoice_no)
{
	const ViewEntry *v = view_find(before, series_id, period);

	if (v == NULL || v->spilled || v->loading)
		return HOLE_FREE;
	if (invoice_no >= v->next)
	{
		const ViewEntry *w = after ? view_find(after, series_id, period) : NULL;

		return (w == NULL || w->spilled || w->loading || invoice_no < w->next) ?
			HOLE_IN_FLIGHT : HOLE_LOST;
	}
	for (int i = 0; i < v->nfree; i++)
		if (v->free[i] == invoice_no)
			return HOLE_FREE;
	return v->busy ? HOLE_IN_FLIGHT : HOLE_LOST;
}

/*
 * The periods of the view whose numbers running transactions held, each
 * with its next number, by calls of fn(series_id, period, next, arg).
 */
void
alloc_view_busy(const AllocView *view,
				void (*fn) (int32 series_id, const char *period, int64 next, void *arg),
				void *arg)
{
	HASH_SEQ_STATUS status;
	ViewEntry  *v;

	hash_seq_init(&status, view->entries);
	while ((v = hash_seq_search(&status)) != NULL)
		if (v->busy && !v->loading)
			fn(v->series_id, v->period, v->next, arg);
}
