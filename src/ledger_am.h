/*-------------------------------------------------------------------------
 *
 * ledger_am.h
 *		The invoice_ledger table access method and the hooks that protect
 *		the ledger.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_LEDGER_AM_H
#define INVOICE_SEQ_LEDGER_AM_H

#include "invoice_seq.h"

extern void ledger_am_permit_update(int32 series_id, const char *period,
									int64 invoice_no);
extern void ledger_am_end_update(void);
extern void ledger_am_install_hooks(void);

#endif							/* INVOICE_SEQ_LEDGER_AM_H */
