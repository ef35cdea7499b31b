/*-------------------------------------------------------------------------
 *
 * record_guard.h
 *		The tables of the legal record, kept whole against DDL, and the
 *		archive that alone lets them be dropped.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_RECORD_GUARD_H
#define INVOICE_SEQ_RECORD_GUARD_H

#include "nodes/nodes.h"

extern bool record_guard_is_record_table(Oid relid);
extern bool record_guard_utility(Node *parsetree);
extern void record_guard_permit_drop(bool permit);
extern void record_guard_object_drop(Oid relid);
extern void record_guard_note_rewrite(Oid transient);

#endif							/* INVOICE_SEQ_RECORD_GUARD_H */
