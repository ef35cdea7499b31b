/*-------------------------------------------------------------------------
 *
 * sqlstate.h
 *		The SQLSTATEs of invoice_seq's own outcomes.
 *
 * A client branches on the SQLSTATE, never on the message.  Where two
 * refusals call for different actions by the client, they have codes of
 * their own.  Each code is in class 55 (object not in prerequisite state),
 * so that code that looks at the class only still sees a refused state; the
 * subclass starts with "I", which the SQL standard leaves to
 * implementations, and PostgreSQL uses none of them.  Other refusals of a
 * state keep 55000: they are mistakes of the program, not outcomes it
 * handles.  README.md ("Errors") lists every code with the client's action.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_SQLSTATE_H
#define INVOICE_SEQ_SQLSTATE_H

/* The idempotency key belongs to a voided number: take a new key. */
#define ERRCODE_ISEQ_KEY_VOIDED			MAKE_SQLSTATE('5','5','I','0','1')

/* The number is voided: it can be neither confirmed nor voided again. */
#define ERRCODE_ISEQ_NUMBER_VOIDED		MAKE_SQLSTATE('5','5','I','0','2')

/* The number is issued: it cannot be voided, nor confirmed otherwise. */
#define ERRCODE_ISEQ_NUMBER_ISSUED		MAKE_SQLSTATE('5','5','I','0','3')

/* The period is closed: its record is final. */
#define ERRCODE_ISEQ_PERIOD_CLOSED		MAKE_SQLSTATE('5','5','I','0','4')

/* A confirm would break the series' date order: void, and renumber. */
#define ERRCODE_ISEQ_OUT_OF_ORDER		MAKE_SQLSTATE('5','5','I','0','5')

/* close_period() found numbers still reserved: reconcile them first. */
#define ERRCODE_ISEQ_NUMBERS_RESERVED	MAKE_SQLSTATE('5','5','I','0','6')

#endif							/* INVOICE_SEQ_SQLSTATE_H */
