/*-------------------------------------------------------------------------
 *
 * sequencer.h
 *		The sequencer, the background worker that records a database's
 *		reservations made inside transaction blocks (started by launch.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_SEQUENCER_H
#define INVOICE_SEQ_SEQUENCER_H

#include "postgres.h"

extern PGDLLEXPORT void invoice_seq_sequencer_main(Datum main_arg);


#endif							/* INVOICE_SEQ_SEQUENCER_H */
