/*-------------------------------------------------------------------------
 *
 * util.h
 *		Helpers every module uses: acting as the extension's owner, running
 *		statements on its tables, the clock, and entry statuses.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_UTIL_H
#define INVOICE_SEQ_UTIL_H

#include "access/skey.h"
#include "executor/spi.h"
#include "fmgr.h"

#include "invoice_seq.h"

extern void invoice_seq_check_schema_version(void);
extern void invoice_seq_utility_enter(bool own_extension);
extern void invoice_seq_utility_exit(bool own_extension);
extern bool invoice_seq_running_own_script(bool utility);
extern Oid	invoice_seq_owner(void);
extern void invoice_seq_become_owner(Oid *save_userid, int *save_sec_context);
extern SPIPlanPtr invoice_seq_plan(SPIPlanPtr *cache, const char *sql,
								   int nargs, Oid *argtypes);
extern int	invoice_seq_execute(SPIPlanPtr plan, Datum *values,
								const char *nulls, bool read_only, long tcount);
extern void invoice_seq_spi_check(int rc, int expected, const char *what);
extern TupleDesc invoice_seq_result_desc(FunctionCallInfo fcinfo);
extern TimestampTz invoice_seq_test_now(void);
extern TimestampTz invoice_seq_now(void);
extern Oid	invoice_seq_ledger_relid(void);
extern void invoice_seq_text_key(ScanKey key, AttrNumber attno, const char *value);
extern bool invoice_seq_period_closed(int32 series_id, const char *period);
extern char *period_label(const char *series, const char *period);
extern const char *entry_status_name(EntryStatus status);
extern EntryStatus parse_entry_status(const char *status);


#endif							/* INVOICE_SEQ_UTIL_H */
