/*-------------------------------------------------------------------------
 *
 * ledger_write.h
 *		Writing ledger rows without the executor (ledger_write.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_LEDGER_WRITE_H
#define INVOICE_SEQ_LEDGER_WRITE_H

#include "access/tableam.h"
#include "utils/rel.h"

extern void ledger_write_insert(Relation rel, Datum *values, bool *isnull);
extern TM_Result ledger_write_lock(Relation rel, ItemPointer tid,
								   TupleTableSlot *slot);
extern void ledger_write_update(Relation rel, ItemPointer tid,
								Datum *values, bool *isnull);

#endif							/* INVOICE_SEQ_LEDGER_WRITE_H */
