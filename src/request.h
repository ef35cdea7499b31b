/*-------------------------------------------------------------------------
 *
 * request.h
 *		The shared memory through which backends ask their database's
 *		sequencer for reservations: a request slot per backend, and per
 *		database, the sequencer's state and its queue of requests.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_REQUEST_H
#define INVOICE_SEQ_REQUEST_H

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "invoice_seq.h"

/*
 * A batch never holds more subtransactions than a PGPROC caches subxids
 * (PGPROC_MAX_CACHED_SUBXIDS), so that other backends' snapshots never
 * overflow into pg_subtrans while a batch is in progress.
 */
#define ISEQ_MAX_BATCH			64

/* An error to be re-raised in the requesting backend. */
typedef struct RequestError
{
	int			sqlerrcode;
	char		message[ISEQ_MAX_ERRTEXT + 1];
	char		detail[ISEQ_MAX_ERRTEXT + 1];
	char		hint[ISEQ_MAX_ERRTEXT + 1];
} RequestError;

/*
 * Life cycle of a request slot.  Each backend owns the slot indexed by its
 * pgprocno, so a backend never waits for a free slot held by someone else.
 *
 *	FREE	-> QUEUED	backend submits (and appends the slot to the queue)
 *	QUEUED	-> FREE		backend withdraws (cancel, timeout)
 *	QUEUED	-> WORKING	sequencer takes it into a batch
 *	WORKING -> DONE		sequencer answers; or -> FREE if the backend left
 *	DONE	-> FREE		backend reads the answer
 */
typedef enum RequestState
{
	REQUEST_FREE = 0,
	REQUEST_QUEUED,
	REQUEST_WORKING,
	REQUEST_DONE
} RequestState;

/*
 * A lock the sequencer found busy, which the requester waits for.  The
 * sequencer never waits for another transaction (see sequencer.c).
 */
typedef enum RequestLock
{
	REQUEST_LOCK_NONE,
	REQUEST_LOCK_SERIES,		/* an admin's transaction holds the series */
	REQUEST_LOCK_KEY,			/* another transaction records the same key */
	REQUEST_LOCK_XACT			/* a transaction inserts the key's row */
} RequestLock;

/* What the sequencer found busy: the requester waits for it, then asks again. */
typedef struct RequestBusy
{
	RequestLock lock;
	TransactionId xid;			/* for REQUEST_LOCK_XACT */
} RequestBusy;

/* What a backend asks the sequencer for. */
typedef struct ReserveRequest
{
	int32		series_id;
	char		series[ISEQ_MAX_SERIES_NAME + 1];
	char		role[NAMEDATALEN];
	Oid			roleid;			/* must be a member of the series' owner */
	bool		has_key;
	char		key[ISEQ_MAX_KEY + 1];
	TimestampTz clock;			/* invoice_seq.test_clock, or 0 */
} ReserveRequest;

typedef struct SequencerRequest
{
	RequestState state;
	int			database;		/* index of its DatabaseSequencer */
	int			next;			/* next slot in the queue, or -1 */
	bool		abandoned;		/* requester stopped waiting */
	bool		committing;		/* its batch has started to commit */
	TimestampTz submitted_at;

	ReserveRequest request;

	/* the answer, valid once state is REQUEST_DONE */
	bool		ok;
	RequestBusy busy;			/* not ok: retry once this is free */
	ReservedNumber result;
	RequestError error;
} SequencerRequest;

/*
 * Counters for the invoice_seq.stats view, per database, since the server
 * started (or the last invoice_seq.stats_reset()).  Queue waits, from
 * submission until the sequencer takes the request, go into power-of-two
 * buckets of microseconds: bucket i counts waits below 2^i us.
 */
#define ISEQ_WAIT_BUCKETS		32

typedef struct SequencerStats
{
	uint64		requests;		/* requests answered (any outcome) */
	uint64		batches;		/* batches committed or failed */
	uint64		max_batch;		/* largest batch */
	uint64		wait_sum_us;	/* total queue wait */
	uint64		wait_buckets[ISEQ_WAIT_BUCKETS];
	uint64		starts;			/* sequencer starts */
	uint64		failures;		/* sequencer exits on an error */
	TimestampTz reset_at;
} SequencerStats;

/*
 * Life cycle of a database's sequencer (launch.c).
 *
 *	STOPPED	 -> STARTING	a backend with a queued request registers a worker
 *	STARTING -> RUNNING		the worker attaches
 *	STARTING -> STOPPED		the worker could not be registered
 *	RUNNING	 -> STOPPED		the worker exits (idle, asked to, or on an error)
 */
typedef enum SequencerState
{
	SEQUENCER_STOPPED = 0,
	SEQUENCER_STARTING,
	SEQUENCER_RUNNING
} SequencerState;

/* One database's sequencer, and the requests queued for it. */
typedef struct DatabaseSequencer
{
	Oid			dboid;			/* InvalidOid: the entry is free */
	SequencerState state;
	uint32		generation;		/* counts starts; a worker attaches only to
								 * the start that registered it */
	pid_t		pid;			/* while RUNNING */
	Latch	   *latch;			/* while RUNNING */
	TimestampTz started_at;		/* last registration of a worker */
	TimestampTz failed_at;		/* last exit on an error */
	TimestampTz last_used;		/* last request queued (eviction order) */
	TimestampTz held_until;		/* no start before this (DROP DATABASE...) */
	bool		stop;			/* exit once the current batch is answered */
	int			queue_head;		/* FIFO of QUEUED slots, linked by next */
	int			queue_tail;
	SequencerStats stats;
} DatabaseSequencer;

/*
 * Shared state of the request path.  One LWLock protects all of it: every
 * critical section is a few assignments.
 */
typedef struct SequencerShared
{
	LWLock	   *lock;
	int			nslots;			/* MaxBackends */
	int			ndatabases;		/* invoice_seq.max_databases */
	DatabaseSequencer *databases;	/* ndatabases entries, after the slots */
	SequencerRequest slots[FLEXIBLE_ARRAY_MEMBER];
} SequencerShared;

/* NULL unless the library was preloaded. */
extern SequencerShared *sequencer_shared;

extern Size request_shmem_size(void);
extern void request_shmem_init(void);
extern void request_queue_push(DatabaseSequencer *db, int slotno);
extern int	request_queue_pop(DatabaseSequencer *db);
extern void request_queue_remove(DatabaseSequencer *db, int slotno);

extern void request_require_preloaded(void);

#endif							/* INVOICE_SEQ_REQUEST_H */
