/*-------------------------------------------------------------------------
 *
 * chain.h
 *		The legal record's hash chain: one link per final ledger entry, per
 *		(series, period), in number order.  See docs/chain.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_CHAIN_H
#define INVOICE_SEQ_CHAIN_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "lib/stringinfo.h"

#include "invoice_seq.h"

/* The link of an entry: SHA-256 of its canonical encoding. */
typedef struct ChainLink
{
	uint8		hash[PG_SHA256_DIGEST_LENGTH];
} ChainLink;

/* The highest sealed entry of a chain. */
typedef struct ChainHead
{
	bool		sealed;			/* false: nothing sealed yet */
	int64		invoice_no;
	ChainLink	link;
} ChainHead;

/* A final ledger entry, as the encoding needs it. */
typedef struct ChainEntry
{
	int64		invoice_no;
	char	   *display_no;
	char	   *status;
	char	   *external_ref;	/* NULL if none */
	char	   *void_reason;	/* NULL if none */
	char	   *actor;			/* confirmed_by, or voided_by */
	TimestampTz at;				/* confirmed_at, or voided_at */
	bytea	   *app_digest;		/* NULL if none */
} ChainEntry;

/* The columns chain_entry_from_row() reads, from ledger_entry e. */
#define CHAIN_ENTRY_COLUMNS \
	"e.invoice_no, e.display_no, e.status, e.external_ref, e.void_reason," \
	" CASE e.status WHEN 'voided' THEN e.voided_by ELSE e.confirmed_by END," \
	" CASE e.status WHEN 'voided' THEN e.voided_at ELSE e.confirmed_at END," \
	" e.app_digest"
#define CHAIN_ENTRY_NCOLS		8

extern void chain_entry_from_row(HeapTuple row, TupleDesc desc, int first,
								 ChainEntry *entry);
extern void chain_encode(StringInfo buf, const char *series, const char *period,
						 const ChainEntry *entry, const ChainLink *prev);
extern void chain_hash(const StringInfo encoding, ChainLink *link);
extern bool chain_link_from_datum(Datum d, ChainLink *link);
extern char *hex_text(const uint8 *bytes, size_t len);

/* Caller is connected to SPI and acts as the extension's owner. */
extern int	chain_seal(const InvoiceSeries *series, const char *period,
					   int max_links, bool wait);
extern void chain_seal_to_end(const InvoiceSeries *series, const char *period);
extern int	chain_seal_database(int max_links, int max_chains, bool *more);
extern int	chain_seal_listed(int max_links, int max_chains, bool *more);
extern void chain_head(int32 series_id, const char *period, ChainHead *head);

#endif							/* INVOICE_SEQ_CHAIN_H */
