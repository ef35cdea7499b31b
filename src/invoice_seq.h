/*-------------------------------------------------------------------------
 *
 * invoice_seq.h
 *		Shared declarations of the invoice_seq extension.
 *
 * The extension hands out gap-free invoice numbers.  A number is taken
 * from the allocator in shared memory (alloc.h) and recorded in the ledger
 * by the transaction that takes it: the caller's own, or, for a reservation
 * made inside a transaction block, that of a background worker, the
 * sequencer, to which backends hand requests through the shared memory
 * described here.  See docs/design.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_H
#define INVOICE_SEQ_H

#include "access/transam.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "pgtime.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* Limits on what the API accepts (bytes, excluding the terminator). */
#define ISEQ_MAX_SERIES_NAME	63
#define ISEQ_MAX_KEY			255
#define ISEQ_MAX_FORMAT			128
#define ISEQ_MAX_DISPLAY		255
#define ISEQ_MAX_PERIOD			7	/* "2026-11" */
#define ISEQ_MAX_EXTERNAL_REF	255
#define ISEQ_MAX_REASON			1000
#define ISEQ_MAX_ERRTEXT		511

/*
 * A batch never holds more subtransactions than a PGPROC caches subxids
 * (PGPROC_MAX_CACHED_SUBXIDS), so that other backends' snapshots never
 * overflow into pg_subtrans while a batch is in progress.
 */
#define ISEQ_MAX_BATCH			64

/*
 * locktag_field4 of the advisory lock that serialises one series.  SQL-level
 * advisory locks use 1 and 2 there, so ours cannot collide with an
 * application's pg_advisory_xact_lock().
 */
#define ISEQ_LOCK_CLASS			0x4953

/* How a series restarts its numbering. */
typedef enum SeriesReset
{
	SERIES_RESET_NEVER,
	SERIES_RESET_YEARLY,
	SERIES_RESET_MONTHLY
} SeriesReset;

/* A series definition, as read from invoice_seq.series_def. */
typedef struct InvoiceSeries
{
	int32		id;
	char		name[ISEQ_MAX_SERIES_NAME + 1];
	int64		start_at;
	SeriesReset reset;
	char		format[ISEQ_MAX_FORMAT + 1];
	char		time_zone[TZ_STRLEN_MAX + 1];
	bool		chronological;	/* never issue a higher number on an earlier day */
	Oid			owner;			/* its members may use the series */
} InvoiceSeries;

/*
 * locktag_field4 of the advisory lock that serialises first uses of one
 * idempotency key, held until the end of the transaction that records it.
 */
#define ISEQ_KEY_LOCK_CLASS		0x4954

/* The status of a ledger entry (column status). */
typedef enum EntryStatus
{
	ENTRY_RESERVED,
	ENTRY_ISSUED,
	ENTRY_VOIDED
} EntryStatus;

/* Attribute numbers of invoice_seq.ledger_entry. */
#define ENTRY_ATT_SERIES_ID			1
#define ENTRY_ATT_PERIOD			2
#define ENTRY_ATT_INVOICE_NO		3
#define ENTRY_ATT_STATUS			5
#define ENTRY_ATT_IDEMPOTENCY_KEY	6
#define ENTRY_ATT_CONFIRMED_AT		11

/* One ledger entry as handed back to a caller of reserve. */
typedef struct ReservedNumber
{
	char		period[ISEQ_MAX_PERIOD + 1];
	int64		invoice_no;
	char		display_no[ISEQ_MAX_DISPLAY + 1];
	EntryStatus status;
	TimestampTz reserved_at;
} ReservedNumber;

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

/* A lock the sequencer found busy, which the requester waits for. */
typedef enum RequestLock
{
	REQUEST_LOCK_NONE,
	REQUEST_LOCK_SERIES,		/* an admin's transaction holds the series */
	REQUEST_LOCK_KEY			/* another transaction records the same key */
} RequestLock;

typedef struct SequencerRequest
{
	RequestState state;
	bool		abandoned;		/* requester stopped waiting */
	bool		committing;		/* its batch has started to commit */
	TimestampTz submitted_at;

	/* the request */
	int32		series_id;
	char		series[ISEQ_MAX_SERIES_NAME + 1];
	char		role[NAMEDATALEN];
	bool		has_key;
	char		key[ISEQ_MAX_KEY + 1];
	TimestampTz clock;			/* invoice_seq.test_clock, or 0 */

	/* the answer, valid once state is REQUEST_DONE */
	bool		ok;
	RequestLock locked;			/* not ok: retry once this lock is free */
	ReservedNumber result;
	RequestError error;
} SequencerRequest;

/*
 * Counters for the invoice_seq.stats view, since the server started (or the
 * last invoice_seq.stats_reset()).  Queue waits, from submission until the
 * sequencer takes the request, go into power-of-two buckets of
 * microseconds: bucket i counts waits below 2^i us.
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
	TimestampTz reset_at;
} SequencerStats;

typedef struct SequencerShared
{
	LWLock	   *lock;			/* protects everything below */
	pid_t		sequencer_pid;	/* 0 while no sequencer is running */
	Latch	   *sequencer_latch;
	int			nslots;

	SequencerStats stats;

	/* FIFO of slot numbers in state QUEUED */
	int			queue_head;
	int			queue_len;
	SequencerRequest slots[FLEXIBLE_ARRAY_MEMBER];
	/* followed by the queue itself: nslots ints */
} SequencerShared;

/* invoice_seq.c */
extern char *invoice_seq_database;
extern int	invoice_seq_lock_timeout;
extern int	invoice_seq_max_batch_size;
extern int	invoice_seq_sequencer_timeout;
extern char *invoice_seq_test_clock;
extern char *invoice_seq_ledger_archive;
extern SequencerShared *sequencer_shared;

extern Oid	invoice_seq_owner(void);
extern void invoice_seq_become_owner(Oid *save_userid, int *save_sec_context);
extern SPIPlanPtr invoice_seq_plan(SPIPlanPtr *cache, const char *sql,
								   int nargs, Oid *argtypes);
extern int	invoice_seq_execute(SPIPlanPtr plan, Datum *values,
								const char *nulls, bool read_only, long tcount);
extern void invoice_seq_spi_check(int rc, int expected, const char *what);
extern void invoice_seq_require_sequencer(void);
extern TupleDesc invoice_seq_result_desc(FunctionCallInfo fcinfo);
extern TimestampTz invoice_seq_test_now(void);
extern TimestampTz invoice_seq_now(void);
extern Oid	invoice_seq_ledger_relid(void);
extern const char *entry_status_name(EntryStatus status);
extern EntryStatus parse_entry_status(const char *status);

/* series.c */
extern bool series_lookup(const char *name, InvoiceSeries *series);
extern bool series_lookup_by_id(int32 id, InvoiceSeries *series);
extern void series_check_name(const char *name);
extern void series_check_member(const InvoiceSeries *series, Oid roleid);
extern void series_lock_tag(LOCKTAG *tag, int32 series_id);
extern void series_lock(int32 series_id);
extern bool series_lock_for_numbering(int32 series_id);
extern bool series_try_lock_for_numbering(int32 series_id);
extern void key_lock_tag(LOCKTAG *tag, int32 series_id, const char *key);
extern void wait_for_lock(const LOCKTAG *tag);
extern void series_period(const InvoiceSeries *series, TimestampTz ts,
						  char *period);
extern void series_render(const InvoiceSeries *series, int64 invoice_no,
						  TimestampTz ts, char *display_no);
extern int	series_day(const InvoiceSeries *series, TimestampTz ts);
extern const char *series_reset_name(SeriesReset reset);

/* ledger_am.c */
extern void ledger_am_permit_update(int32 series_id, const char *period,
									int64 invoice_no);
extern void ledger_am_end_update(void);
extern void ledger_am_install_hooks(void);

/* request.c */
extern Size request_shmem_size(void);
extern void request_shmem_init(void);
extern void request_queue_push(int slotno);
extern int	request_queue_pop(void);
extern void request_reserve_remote(const InvoiceSeries *series, const char *key,
								   const char *role, ReservedNumber *result);

/* sequencer.c */
extern void invoice_seq_register_sequencer(void);
extern PGDLLEXPORT void invoice_seq_sequencer_main(Datum main_arg);

#endif							/* INVOICE_SEQ_H */
