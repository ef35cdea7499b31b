/*-------------------------------------------------------------------------
 *
 * sequencer.h
 *		The sequencer, the background worker that records reservations made
 *		inside transaction blocks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_SEQUENCER_H
#define INVOICE_SEQ_SEQUENCER_H

#include "postgres.h"

extern void invoice_seq_register_sequencer(void);
extern PGDLLEXPORT void invoice_seq_sequencer_main(Datum main_arg);


#endif							/* INVOICE_SEQ_SEQUENCER_H */
