/*-------------------------------------------------------------------------
 *
 * invoice_seq.h
 *		Shared declarations of the invoice_seq extension.
 *
 * The extension hands out gap-free invoice numbers.  A number is taken
 * from the allocator in shared memory (alloc.h) and recorded in the ledger
 * (ledger.h) by the transaction that takes it: the caller's own (number.c),
 * or, for a reservation made inside a transaction block, that of a
 * background worker, the sequencer (request.h, sequencer.h).  This header
 * holds the types they share, and the settings.  See docs/design.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_H
#define INVOICE_SEQ_H

#include "datatype/timestamp.h"
#include "pgtime.h"

/* Limits on what the API accepts (bytes, excluding the terminator). */
#define ISEQ_MAX_SERIES_NAME	63
#define ISEQ_MAX_KEY			255
#define ISEQ_MAX_FORMAT			128
#define ISEQ_MAX_DISPLAY		255
#define ISEQ_MAX_PERIOD			7	/* "2026-11" */
#define ISEQ_DEFAULT_MAX_PERIODS	65536	/* invoice_seq.max_periods */
#define ISEQ_MAX_EXTERNAL_REF	255
#define ISEQ_MAX_REASON			1000
#define ISEQ_MAX_ERRTEXT		511
#define ISEQ_APP_DIGEST_LEN		32	/* a SHA-256 */

/* How a series restarts its numbering. */
typedef enum SeriesReset
{
	SERIES_RESET_NEVER,
	SERIES_RESET_YEARLY,
	SERIES_RESET_MONTHLY
} SeriesReset;

/* A national preset of a series (preset.c). */
typedef enum SeriesPreset
{
	PRESET_NONE,
	PRESET_TR_EFATURA,			/* Turkey, e-Fatura and e-Arsiv */
	PRESET_PT_ATCUD,			/* Portugal, ATCUD */
	PRESET_FR					/* France */
} SeriesPreset;

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
	SeriesPreset preset;
} InvoiceSeries;

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
#define ENTRY_ATT_DISPLAY_NO		4
#define ENTRY_ATT_STATUS			5
#define ENTRY_ATT_IDEMPOTENCY_KEY	6
#define ENTRY_ATT_EXTERNAL_REF		7
#define ENTRY_ATT_VOID_REASON		8
#define ENTRY_ATT_RESERVED_AT		9
#define ENTRY_ATT_RESERVED_BY		10
#define ENTRY_ATT_CONFIRMED_AT		11
#define ENTRY_ATT_CONFIRMED_BY		12
#define ENTRY_ATT_VOIDED_AT			13
#define ENTRY_ATT_VOIDED_BY			14
#define ENTRY_ATT_HOLDER_XID		15
#define ENTRY_ATT_APP_DIGEST		16
#define ENTRY_NATTS					16

/* Columns of invoice_seq.period_close, by number. */
#define CLOSE_ATT_SERIES_ID			1
#define CLOSE_ATT_PERIOD			2

/* One ledger entry as handed back to a caller of reserve. */
typedef struct ReservedNumber
{
	char		period[ISEQ_MAX_PERIOD + 1];
	int64		invoice_no;
	char		display_no[ISEQ_MAX_DISPLAY + 1];
	EntryStatus status;
	TimestampTz reserved_at;
} ReservedNumber;

/* Settings (invoice_seq.c); see README.md. */
extern int	invoice_seq_lock_timeout;
extern int	invoice_seq_max_databases;
extern int	invoice_seq_idle_timeout;
extern bool invoice_seq_sealing;
extern int	invoice_seq_max_batch_size;
extern int	invoice_seq_sequencer_timeout;
extern char *invoice_seq_test_clock;
extern char *invoice_seq_ledger_archive;
extern int	invoice_seq_max_periods;

#endif							/* INVOICE_SEQ_H */
