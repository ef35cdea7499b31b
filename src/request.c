/*-------------------------------------------------------------------------
 *
 * request.c
 *		The request path's shared memory: a request slot per backend, and
 *		per database, its sequencer's state and its FIFO of queued requests.
 *
 * The queues are linked through the slots themselves (SequencerRequest.next),
 * so that any number of databases share MaxBackends slots.  Callers hold
 * sequencer_shared->lock exclusively around every queue operation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "invoice_seq.h"
#include "request.h"

/* NULL unless the library was preloaded. */
SequencerShared *sequencer_shared = NULL;

Size
request_shmem_size(void)
{
	Size		size = offsetof(SequencerShared, slots);

	size = add_size(size, mul_size(MaxBackends, sizeof(SequencerRequest)));
	size = add_size(size, mul_size(invoice_seq_max_databases,
								   sizeof(DatabaseSequencer)));
	return size;
}

void
request_shmem_init(void)
{
	bool		found;
	int			i;

	sequencer_shared = ShmemInitStruct("invoice_seq", request_shmem_size(), &found);
	if (found)
		return;

	memset(sequencer_shared, 0, request_shmem_size());
	sequencer_shared->lock = &(GetNamedLWLockTranche("invoice_seq"))->lock;
	sequencer_shared->nslots = MaxBackends;
	sequencer_shared->ndatabases = invoice_seq_max_databases;
	sequencer_shared->databases =
		(DatabaseSequencer *) &sequencer_shared->slots[MaxBackends];
	for (i = 0; i < sequencer_shared->ndatabases; i++)
	{
		sequencer_shared->databases[i].queue_head = -1;
		sequencer_shared->databases[i].queue_tail = -1;
	}
}

/* Append a slot to a database's queue. */
void
request_queue_push(DatabaseSequencer *db, int slotno)
{
	SequencerRequest *slot = &sequencer_shared->slots[slotno];

	slot->next = -1;
	if (db->queue_tail < 0)
		db->queue_head = slotno;
	else
		sequencer_shared->slots[db->queue_tail].next = slotno;
	db->queue_tail = slotno;
}

/* Take the oldest slot off a database's queue, or -1. */
int
request_queue_pop(DatabaseSequencer *db)
{
	int			slotno = db->queue_head;

	if (slotno < 0)
		return -1;
	db->queue_head = sequencer_shared->slots[slotno].next;
	if (db->queue_head < 0)
		db->queue_tail = -1;
	return slotno;
}

/*
 * Remove a slot from the middle of a queue.  Rare (a requester gave up
 * before the sequencer took its request), so a walk is fine.
 */
void
request_queue_remove(DatabaseSequencer *db, int slotno)
{
	int			prev = -1;
	int			cur = db->queue_head;

	while (cur >= 0 && cur != slotno)
	{
		prev = cur;
		cur = sequencer_shared->slots[cur].next;
	}
	if (cur < 0)
		return;
	if (prev < 0)
		db->queue_head = sequencer_shared->slots[cur].next;
	else
		sequencer_shared->slots[prev].next = sequencer_shared->slots[cur].next;
	if (db->queue_tail == slotno)
		db->queue_tail = prev;
}

/* Raise 55000 unless the library was preloaded. */
void
request_require_preloaded(void)
{
	if (sequencer_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invoice_seq sequencer is not available"),
				 errdetail("invoice_seq was not loaded at server start."),
				 errhint("Add invoice_seq to shared_preload_libraries in postgresql.conf and restart the server.")));
}
