/*-------------------------------------------------------------------------
 *
 * pg_version_compat.h
 *		The differences between the PostgreSQL versions invoice_seq builds
 *		against, in one place.
 *
 * The code is written against the newest API; this header maps it onto
 * older servers.  Supported: 15 and later.
 *
 *-------------------------------------------------------------------------
 */
#ifndef INVOICE_SEQ_PG_VERSION_COMPAT_H
#define INVOICE_SEQ_PG_VERSION_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "invoice_seq needs PostgreSQL 15 or later"
#endif

#if PG_VERSION_NUM < 160000

/* 16 renamed relation file "nodes" to "locators". */
#define RelFileLocator RelFileNode
#define rd_firstRelfilelocatorSubid rd_firstRelfilenodeSubid
#define relation_set_new_filelocator relation_set_new_filenode

/* 16 made tuple_update say which indexes need new entries. */
typedef bool TU_UpdateIndexes;
#define UPDATE_NEEDS_INDEX_ENTRIES(u) (u)
#define UPDATE_SUMMARIZING_ONLY(u) false
#define INDEX_IS_SUMMARIZING(index) false

/* 16 added soft error reporting to name-list parsing. */
#define stringToQualifiedNameList(string, escontext) \
	stringToQualifiedNameList(string)

#endif							/* PG_VERSION_NUM < 160000 */

#if PG_VERSION_NUM < 170000

/* 17 numbers processes with a global, and PGPROC lost pgprocno. */
#define MyProcNumber (MyProc->pgprocno)

/* 17 moved a backend's local transaction id into its virtual one. */
#define MyLocalTransactionId (MyProc->lxid)

/*
 * 17 lets LockHeldByMe() accept a stronger lock.  Its declaration comes
 * first, so that the macro does not rewrite it.
 */
#include "storage/lock.h"
#define LockHeldByMe(locktag, lockmode, orstronger) \
	LockHeldByMe(locktag, lockmode)

#endif							/* PG_VERSION_NUM < 170000 */

/* 16 added summarizing indexes, which a HOT update still gives entries. */
#if PG_VERSION_NUM >= 160000
#define UPDATE_NEEDS_INDEX_ENTRIES(u) ((u) != TU_None)
#define UPDATE_SUMMARIZING_ONLY(u) ((u) == TU_Summarizing)
#define INDEX_IS_SUMMARIZING(index) ((index)->rd_indam->amsummarizing)
#endif

/* 17 lets a dshash table say how its keys are copied. */
#if PG_VERSION_NUM >= 170000
#define DSHASH_COPY_FUNCTION(fn) .copy_function = (fn),
#else
#define DSHASH_COPY_FUNCTION(fn)
#endif

#if PG_VERSION_NUM >= 170000
#define MyLocalTransactionId (MyProc->vxid.lxid)
#endif

/* 18 dropped the execute_once argument of ExecutorRun() and its hook. */
#if PG_VERSION_NUM >= 180000
#define EXECUTOR_RUN_ONCE_PARAM
#define EXECUTOR_RUN_ONCE_ARG
#else
#define EXECUTOR_RUN_ONCE_PARAM , bool execute_once
#define EXECUTOR_RUN_ONCE_ARG , execute_once
#endif

/*
 * 18 marks functions that do not return with pg_noreturn, before the
 * declaration, where pg_attribute_noreturn() went after it (and is gone).
 */
#if PG_VERSION_NUM < 180000
#define pg_noreturn
#endif

/* 18 lets a module say its name and version (shown by pg_get_loaded_modules). */
#if PG_VERSION_NUM >= 180000
#define INVOICE_SEQ_MODULE_MAGIC \
	PG_MODULE_MAGIC_EXT(.name = "invoice_seq", .version = "1.4.1")
#else
#define INVOICE_SEQ_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/*
 * Are synchronous standbys defined, as the checkpointer last saw
 * synchronous_standby_names?  Minor releases of 2025 turned the flag into
 * bits (SYNC_STANDBY_DEFINED); earlier ones have a bool.
 */
#ifdef SYNC_STANDBY_DEFINED
#define SYNC_STANDBYS_DEFINED(ctl) \
	(((ctl)->sync_standbys_status & SYNC_STANDBY_DEFINED) != 0)
#else
#define SYNC_STANDBYS_DEFINED(ctl) ((ctl)->sync_standbys_defined)
#endif

#endif							/* INVOICE_SEQ_PG_VERSION_COMPAT_H */
