/*-------------------------------------------------------------------------
 *
 * launch.h
 *		Each database's sequencer: started on demand by the backend whose
 *		request needs it, kept out of the way of commands that need the
 *		database alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_LAUNCH_H
#define INVOICE_SEQ_LAUNCH_H

#include "pg_version_compat.h"
#include "request.h"

/* Backends: the entry of a database, and its sequencer. */
extern DatabaseSequencer *launch_entry(Oid dboid);
extern pg_noreturn void launch_entry_error(void);
extern void launch_sequencer_if_needed(Oid dboid);
extern void launch_wake_sealer(void);

/* The sequencer: joining its entry, and leaving it. */
extern DatabaseSequencer *launch_attach(Datum main_arg, Oid *dboid);
extern void launch_detach(DatabaseSequencer *db, int code);
extern bool launch_leave_if_done(DatabaseSequencer *db, bool idle);

extern void launch_install_hooks(void);

#endif							/* INVOICE_SEQ_LAUNCH_H */
