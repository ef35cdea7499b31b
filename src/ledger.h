/*-------------------------------------------------------------------------
 *
 * ledger.h
 *		Rows of invoice_seq.ledger_entry: numbers taken and recorded in the
 *		transaction that takes them, idempotency keys, and the transitions
 *		reserved -> issued and reserved -> voided.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_LEDGER_H
#define INVOICE_SEQ_LEDGER_H

#include "fmgr.h"
#include "utils/snapshot.h"

#include "invoice_seq.h"

/* Who voids a number that can no longer be issued: the extension itself. */
#define AUTO_VOIDED_BY "invoice_seq"

/* A number that a running transaction holds: its row, not yet committed. */
typedef struct HeldNumber
{
	int64		invoice_no;
	TimestampTz taken_at;
	char	   *taken_by;
	bool		one_step;		/* next_invoice_no(), else a reservation */
} HeldNumber;

typedef void (*HeldNumberFn) (const HeldNumber *held, void *arg);

extern bool ledger_held(int32 series_id, const char *period, int64 invoice_no,
						HeldNumber *held);
extern void ledger_held_at_top(int32 series_id, const char *period,
							   Snapshot snapshot, HeldNumberFn fn, void *arg);
extern void ledger_lock_tables(void);
extern bool ledger_find_key(const InvoiceSeries *series, const char *key,
							ReservedNumber *result, TransactionId *busy);
extern void ledger_take_number(const InvoiceSeries *series, const char *key,
							   EntryStatus status, const char *role,
							   TimestampTz clock, const bytea *app_digest,
							   ReservedNumber *result);
extern void check_app_digest(const bytea *digest);
extern void ledger_void_free(const InvoiceSeries *series, const char *period,
							 int64 invoice_no, TimestampTz now,
							 const char *reason);
extern char *resolve_period(const InvoiceSeries *series, text *period_arg);
extern char *number_label(const char *series, const char *period,
						  int64 invoice_no);

#endif							/* INVOICE_SEQ_LEDGER_H */
