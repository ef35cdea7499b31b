/*-------------------------------------------------------------------------
 *
 * alloc.h
 *		The allocator: which number a (series, period) hands out next.
 *
 * Shared memory holds one entry per (database, ledger, series, period) in
 * use: the next number never handed out, and the *free* numbers, those that
 * were handed to a transaction that did not commit them.  An entry is
 * loaded from the ledger on first use, so it is rebuilt after a restart,
 * a crash, a promotion or a restore; a load reads only the numbers above
 * the sealed chain head.  A process that takes a number holds it until its
 * transaction ends: it is kept if the transaction commits, and goes back
 * to the free set if the transaction, or the subtransaction that took it,
 * aborts.  There is no limit on the entries in use; idle ones beyond
 * invoice_seq.max_periods are evicted.
 *
 * Locking: the entries are a dshash table, whose partition locks (wait
 * event "invoice_seq_alloc") are the only locks taken per number: one
 * partition, exclusively, to take a number, and again to release it at the
 * end of the transaction.  A process holds at most one partition lock at a
 * time, and under it takes nothing but the DSA area's lock (to grow or
 * free an entry's free numbers).  The series lock, heavyweight, is taken
 * before, never under it.  Loading an entry from the ledger happens with
 * no lock held, the entry marked LOADING; others wait on a condition
 * variable.  An entry is evicted, or reloaded, only while no transaction
 * holds a number of it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_ALLOC_H
#define INVOICE_SEQ_ALLOC_H

#include "invoice_seq.h"

/*
 * Free numbers an entry remembers, at most; more are found again by a
 * reload.  An entry has room only for those it has.
 */
#define ISEQ_FREE_SLOTS			256

/* What a number below an entry's next, with no ledger row, is. */
typedef enum HoleKind
{
	HOLE_FREE,					/* handed out again by the next caller */
	HOLE_IN_FLIGHT,				/* perhaps held by a transaction still running */
	HOLE_LOST					/* neither: a gap */
} HoleKind;

/* A number taken from the allocator by this transaction. */
typedef struct TakenNumber
{
	int64		invoice_no;
	TimestampTz at;				/* when it was taken: under the allocator's
								 * lock, never before an earlier take of its
								 * (series, period) */
	TimestampTz limit;			/* latest time it may be issued at, for a
								 * chronological series (DT_NOEND: any) */
	TimestampTz dated;			/* a time within its period, to render it */
	bool		recycled;		/* it was a free number */
	bool		sweep_due;		/* free numbers of earlier periods may need
								 * voiding (see void_ended_periods) */
} TakenNumber;

extern Size alloc_shmem_size(void);
extern void alloc_shmem_init(void);
extern bool alloc_take(const InvoiceSeries *series, const char *period,
					   TimestampTz period_end, TimestampTz clock,
					   TakenNumber *taken);
extern bool alloc_claim(const InvoiceSeries *series, const char *period,
						int64 invoice_no, bool all_free, TakenNumber *taken);
extern void alloc_sweep_done(const InvoiceSeries *series, const char *period);
extern void alloc_close_at_commit(const InvoiceSeries *series,
								  const char *period);
extern void alloc_forget(const InvoiceSeries *series, const char *period,
						 int64 invoice_no);
typedef struct AllocView AllocView;

extern AllocView *alloc_view(int32 series_id);
extern HoleKind alloc_hole_kind(const AllocView *before, const AllocView *after,
								int32 series_id, const char *period,
								int64 invoice_no);
extern void alloc_view_busy(const AllocView *view,
							void (*fn) (int32 series_id, const char *period,
										int64 next, void *arg),
							void *arg);

#endif							/* INVOICE_SEQ_ALLOC_H */
