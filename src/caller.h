/*-------------------------------------------------------------------------
 *
 * caller.h
 *		Where one of our SQL functions is called from: by the statement the
 *		client sent, or from the body of a function, procedure, trigger or
 *		DO block that it runs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_CALLER_H
#define INVOICE_SEQ_CALLER_H

#include "fmgr.h"

extern void caller_install_hooks(void);
extern bool caller_is_client_statement(FunctionCallInfo fcinfo);

#endif							/* INVOICE_SEQ_CALLER_H */
