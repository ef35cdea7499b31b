/*-------------------------------------------------------------------------
 *
 * seal_due.h
 *		The chains with something new to seal: the (series, period) pairs
 *		whose final ledger entries committed since the sequencer last
 *		sealed them, in shared memory.
 *
 * A transaction that makes an entry final (a one-step number, a confirm, a
 * void) notes its chain; when it commits, the chain is listed.  The
 * sequencer of the database takes the list and seals those chains only,
 * instead of looking at every chain of the ledger.  A list that is full
 * counts an overflow; the sequencer then looks at every chain once more
 * (chain_seal_database), as it does when it starts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_SEAL_DUE_H
#define INVOICE_SEQ_SEAL_DUE_H

#include "invoice_seq.h"

/* A chain: a (series, period) of one database's ledger. */
typedef struct SealDueKey
{
	Oid			dbid;
	Oid			ledger;			/* a re-created extension starts afresh */
	int32		series_id;
	char		period[ISEQ_MAX_PERIOD + 1];
} SealDueKey;

extern Size seal_due_shmem_size(void);
extern void seal_due_shmem_init(void);

/* This transaction made an entry of the chain final. */
extern void seal_due_note(int32 series_id, const char *period);

/* For the sequencer of MyDatabaseId. */
extern int	seal_due_take(SealDueKey *keys, int max);
extern void seal_due_put_back(const SealDueKey *key);
extern uint64 seal_due_overflows(void);

/* DROP DATABASE */
extern void seal_due_forget_database(Oid dbid);

#endif							/* INVOICE_SEQ_SEAL_DUE_H */
