/*-------------------------------------------------------------------------
 *
 * series.h
 *		Series: their definition, periods, display numbers, and the locks
 *		that serialise them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_SERIES_H
#define INVOICE_SEQ_SERIES_H

#include "storage/lock.h"

#include "invoice_seq.h"

/*
 * locktag_field4 of the advisory lock that serialises one series.  SQL-level
 * advisory locks use 1 and 2 there, so ours cannot collide with an
 * application's pg_advisory_xact_lock().
 */
#define ISEQ_LOCK_CLASS			0x4953

/*
 * locktag_field4 of the advisory lock that serialises first uses of one
 * idempotency key, held until the end of the transaction that records it.
 */
#define ISEQ_KEY_LOCK_CLASS		0x4954

/*
 * locktag_field4 of the advisory lock that serialises the sealing of one
 * (series, period) chain.
 */
#define ISEQ_SEAL_LOCK_CLASS	0x4955

/*
 * locktag_field4 of the advisory lock of a group of series, which a
 * transaction that numbers many series holds instead of their own
 * (series.c).
 */
#define ISEQ_GROUP_LOCK_CLASS	0x4956

extern Size series_shmem_size(void);
extern void series_shmem_init(void);
extern uint64 series_generation(void);
extern bool series_lookup(const char *name, InvoiceSeries *series);
extern bool series_lookup_by_id(int32 id, InvoiceSeries *series);
extern void series_get(const char *name, InvoiceSeries *series);
extern void series_check_name(const char *name);
extern void series_check_member(const InvoiceSeries *series, Oid roleid);
extern void series_lock_tag(LOCKTAG *tag, int32 series_id);
extern bool series_locked_here(int32 series_id);
extern void series_lock_and_reread(InvoiceSeries *series, Oid roleid,
								   bool manage);
extern bool series_lock_for_numbering(int32 series_id);
extern bool series_try_lock_for_numbering(int32 series_id);
extern void key_lock_tag(LOCKTAG *tag, int32 series_id, const char *key);
extern void wait_for_lock(const LOCKTAG *tag);
extern void series_period(const InvoiceSeries *series, TimestampTz ts,
						  char *period, TimestampTz *period_end);
extern void series_render(const InvoiceSeries *series, int64 invoice_no,
						  TimestampTz ts, char *display_no);
extern TimestampTz series_period_start(const InvoiceSeries *series,
									   const char *period);
extern int	series_day(const InvoiceSeries *series, TimestampTz ts);
extern const char *series_reset_name(SeriesReset reset);

#endif							/* INVOICE_SEQ_SERIES_H */
