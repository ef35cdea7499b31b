/*-------------------------------------------------------------------------
 *
 * remote.h
 *		A reservation made by the sequencer of the caller's database, for a
 *		caller inside a transaction block.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_REMOTE_H
#define INVOICE_SEQ_REMOTE_H

#include "invoice_seq.h"

extern void request_reserve_remote(const InvoiceSeries *series, const char *key,
								   Oid roleid, ReservedNumber *result);

#endif							/* INVOICE_SEQ_REMOTE_H */
