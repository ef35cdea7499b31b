/*-------------------------------------------------------------------------
 *
 * series.c
 *		Series: validation, the display format, periods, the series lock
 *		and the SQL functions with which a DBA manages series.
 *
 * A series is a row of invoice_seq.series_def.  Everything that changes a
 * series takes the series lock, the same transaction-level advisory lock
 * that the sequencer holds while it allocates a number of that series.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "common/hashfn.h"

#include "pg_version_compat.h"
#include "preset.h"
#include "series.h"
#include "util.h"

PG_FUNCTION_INFO_V1(invoice_seq_create_series);
PG_FUNCTION_INFO_V1(invoice_seq_create_series_preset);
PG_FUNCTION_INFO_V1(invoice_seq_alter_series);
PG_FUNCTION_INFO_V1(invoice_seq_drop_series);

/* What a format template contains, as far as validation cares. */
typedef struct FormatSummary
{
	int			numbers;		/* {n} and {n:W} tokens */
	bool		has_year;		/* {YYYY} or {YY} */
	bool		has_month;		/* {MM} */
} FormatSummary;

/*
 * The generation of series definitions: how many transactions that changed
 * a series (alter_series, drop_series) have committed, in the whole
 * cluster, since the server started.  A backend that read a series before
 * it took the series lock reads it again if the generation moved: a change
 * committed between its read and its lock, without making it wait.  A
 * change is counted once its commit is visible and before its lock is
 * released, so a reader either sees the change or sees the count move.
 */
typedef struct SeriesShared
{
	pg_atomic_uint64 generation;
} SeriesShared;

static SeriesShared *series_shared = NULL;

/* This transaction changed a series: count it when it commits. */
static bool changed_here = false;
/* It created, changed or dropped one: its reads skip the cache below. */
static bool written_here = false;
static bool xact_callback_registered = false;

/*
 * The series this backend read by name, for the calls that hand out and
 * confirm numbers: without it, each of them read series_def through its
 * index.  An entry is used while the generation it was read at is still
 * the cluster's: no alter_series() or drop_series() has committed since.
 * The generation is read before the snapshot that reads the row, and a
 * change is counted once its commit is visible, so every change counted
 * in it is in the row, and a later one moves the generation.  A new series
 * changes no entry, and the cache holds only series that exist.
 *
 * Only a READ COMMITTED read, which sees the last committed definitions,
 * may use or fill it, and not in a transaction that wrote series_def
 * itself (its reads see its own uncommitted change).  A relcache
 * invalidation of series_def (DROP EXTENSION drops it) empties it.
 */
typedef struct CachedSeries
{
	char		name[ISEQ_MAX_SERIES_NAME + 1];	/* the key */
	uint64		generation;
	InvoiceSeries series;
} CachedSeries;

/* Past this many entries the cache starts again empty (about 1.6 MB). */
#define SERIES_CACHE_MAX	4096

static HTAB *series_cache = NULL;
static Oid	series_cache_relid = InvalidOid;

static SPIPlanPtr alter_plan = NULL;
static SPIPlanPtr used_plan = NULL;
static SPIPlanPtr drop_plan = NULL;

/*
 * Raise 22004 if argument argno is NULL; the message names the argument.
 */
#define REQUIRE_ARG(argno, argname) \
	do { \
		if (PG_ARGISNULL(argno)) \
			ereport(ERROR, \
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), \
					 errmsg("%s must not be NULL", (argname)))); \
	} while (0)

Size
series_shmem_size(void)
{
	return MAXALIGN(sizeof(SeriesShared));
}

void
series_shmem_init(void)
{
	bool		found;

	series_shared = ShmemInitStruct("invoice_seq series", sizeof(SeriesShared),
									&found);
	if (!found)
		pg_atomic_init_u64(&series_shared->generation, 0);
}

/* The generation of series definitions (0 unless the library was preloaded). */
uint64
series_generation(void)
{
	return series_shared ? pg_atomic_read_u64(&series_shared->generation) : 0;
}

/*
 * End of a transaction that changed a series.  A prepared one would commit
 * in another session, uncounted, so PREPARE is refused.
 */
static void
series_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		written_here = false;
	if (!changed_here)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that changed an invoice series"),
					 errdetail("alter_series() and drop_series() cannot take part in two-phase commit.")));
			break;
		case XACT_EVENT_COMMIT:
			if (series_shared)
				pg_atomic_fetch_add_u64(&series_shared->generation, 1);
			changed_here = false;
			break;
		case XACT_EVENT_ABORT:
			changed_here = false;
			break;
		default:
			break;
	}
}

/* This transaction writes series_def: its reads bypass the cache. */
static void
note_written_here(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(series_xact_callback, NULL);
		xact_callback_registered = true;
	}
	written_here = true;
}

/* Count this transaction's change of a series when it commits. */
static void
count_change_at_commit(void)
{
	note_written_here();
	changed_here = true;
}

const char *
series_reset_name(SeriesReset reset)
{
	switch (reset)
	{
		case SERIES_RESET_NEVER:
			return "never";
		case SERIES_RESET_YEARLY:
			return "yearly";
		case SERIES_RESET_MONTHLY:
			return "monthly";
	}
	return "never";				/* keep compiler quiet */
}

static SeriesReset
parse_reset(const char *reset)
{
	if (strcmp(reset, "never") == 0)
		return SERIES_RESET_NEVER;
	if (strcmp(reset, "yearly") == 0)
		return SERIES_RESET_YEARLY;
	if (strcmp(reset, "monthly") == 0)
		return SERIES_RESET_MONTHLY;

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid reset \"%s\"", reset),
			 errhint("Use 'never', 'yearly' or 'monthly'.")));
	return SERIES_RESET_NEVER;	/* keep compiler quiet */
}

/*
 * Series names appear in messages, logs and display numbers, so they are
 * restricted to a small, unambiguous alphabet.
 */
void
series_check_name(const char *name)
{
	size_t		len = strlen(name);
	const char *p;

	if (len == 0 || len > ISEQ_MAX_SERIES_NAME)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid series name: it has %zu bytes", len),
				 errdetail("A series name has 1 to %d characters.",
						   ISEQ_MAX_SERIES_NAME)));

	for (p = name; *p; p++)
	{
		bool		alnum = (*p >= 'A' && *p <= 'Z') ||
			(*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9');

		if (alnum || (p > name && (*p == '_' || *p == '-' || *p == '.')))
			continue;

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid series name \"%s\"", name),
				 errdetail("A series name consists of letters, digits, \"_\", \"-\" and \".\", and starts with a letter or a digit.")));
	}
}

/* The width W of a token "n:W" (1 to 20), or 0 if it is not one. */
static int
number_width(const char *token)
{
	const char *digits = token + 2;
	size_t		ndigits = strlen(digits);

	if (strncmp(token, "n:", 2) != 0 || ndigits < 1 || ndigits > 2 ||
		strspn(digits, "0123456789") != ndigits)
		return 0;
	return (atoi(digits) <= 20) ? atoi(digits) : 0;
}

/*
 * Expand a format template into "out" for invoice number n at the calendar
 * time tm, and summarise its tokens into "summary".  out (and tm) may be
 * NULL to parse only.  A malformed template raises 22023.
 *
 * Tokens: {n}, {n:W} (zero-padded to W digits, 1 <= W <= 20), {YYYY}, {YY}
 * and {MM}.  Everything else is literal text, except braces, which only
 * ever delimit tokens, and control characters.
 */
static void
format_expand(const char *format, int64 n, const struct pg_tm *tm,
			  StringInfo out, FormatSummary *summary)
{
	const char *p = format;

	memset(summary, 0, sizeof(FormatSummary));

	while (*p)
	{
		const char *close;
		char		token[8];
		size_t		toklen;
		int			width;

		if (*p == '}')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid format \"%s\": unbalanced \"}\"", format),
					 errhint("Braces only delimit the tokens {n}, {n:W}, {YYYY}, {YY} and {MM}.")));

		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid format: it contains a control character")));

		if (*p != '{')
		{
			if (out)
				appendStringInfoChar(out, *p);
			p++;
			continue;
		}

		close = strchr(p, '}');
		toklen = close ? (size_t) (close - p - 1) : 0;
		if (close == NULL || memchr(p + 1, '{', toklen) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid format \"%s\": unbalanced \"{\"", format),
					 errhint("Braces only delimit the tokens {n}, {n:W}, {YYYY}, {YY} and {MM}.")));

		if (toklen >= sizeof(token))
			toklen = sizeof(token) - 1; /* too long to be a known token */
		memcpy(token, p + 1, toklen);
		token[toklen] = '\0';

		if (strcmp(token, "n") == 0)
		{
			summary->numbers++;
			if (out)
				appendStringInfo(out, INT64_FORMAT, n);
		}
		else if ((width = number_width(token)) > 0)
		{
			summary->numbers++;
			if (out)
				appendStringInfo(out, "%0*lld", width, (long long) n);
		}
		else if (strcmp(token, "YYYY") == 0)
		{
			summary->has_year = true;
			if (out)
				appendStringInfo(out, "%04d", tm->tm_year);
		}
		else if (strcmp(token, "YY") == 0)
		{
			summary->has_year = true;
			if (out)
				appendStringInfo(out, "%02d", tm->tm_year % 100);
		}
		else if (strcmp(token, "MM") == 0)
		{
			summary->has_month = true;
			if (out)
				appendStringInfo(out, "%02d", tm->tm_mon);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid format \"%s\": unknown token \"%.*s\"",
							format, (int) (close - p + 1), p),
					 errhint("Known tokens are {n}, {n:W} with W from 1 to 20, {YYYY}, {YY} and {MM}.")));

		p = close + 1;
	}
}

/*
 * Check that a format template is well formed and that the display numbers
 * it renders are unique within the series: it contains the number exactly
 * once, and the period of a series that resets.
 */
static void
check_format(const char *format, SeriesReset reset)
{
	FormatSummary summary;

	/*
	 * Display numbers always fit: a format holds one number token, which
	 * expands to at most 20 characters, and every other token shrinks.
	 */
	StaticAssertStmt(ISEQ_MAX_FORMAT + 20 <= ISEQ_MAX_DISPLAY,
					 "display number buffer too small for the longest format");

	if (strlen(format) > ISEQ_MAX_FORMAT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid format: it has %zu bytes", strlen(format)),
				 errdetail("A format has at most %d bytes.", ISEQ_MAX_FORMAT)));

	format_expand(format, 0, NULL, NULL, &summary);

	if (summary.numbers != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid format \"%s\": it must contain {n} or {n:W} exactly once",
						format)));

	if ((reset == SERIES_RESET_YEARLY && !summary.has_year) ||
		(reset == SERIES_RESET_MONTHLY && !(summary.has_year && summary.has_month)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid format \"%s\" for a series that resets %s",
						format, series_reset_name(reset)),
				 errdetail("Numbering restarts every period, so the display number must show the period to stay unique."),
				 errhint("Add %s to the format.",
						 reset == SERIES_RESET_YEARLY ? "{YYYY}" : "{YYYY} and {MM}")));
}

static void
check_stale_after(Interval *stale_after)
{
	Interval	zero;
	Interval	limit;

	memset(&zero, 0, sizeof(zero));
	memset(&limit, 0, sizeof(limit));
	limit.month = 100 * MONTHS_PER_YEAR;

	if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
										  IntervalPGetDatum(stale_after),
										  IntervalPGetDatum(&zero))) <= 0 ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp,
										  IntervalPGetDatum(stale_after),
										  IntervalPGetDatum(&limit))) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid stale_after \"%s\"",
						DatumGetCString(DirectFunctionCall1(interval_out,
															IntervalPGetDatum(stale_after)))),
				 errdetail("stale_after must be positive and at most 100 years.")));
}

static pg_tz *
series_tz(const char *time_zone, const char *series_name)
{
	pg_tz	   *tz;

	if (strlen(time_zone) > TZ_STRLEN_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid time zone: it has %zu bytes", strlen(time_zone)),
				 errdetail("A time zone name has at most %d bytes.", TZ_STRLEN_MAX)));

	tz = pg_tzset(time_zone);
	if (tz == NULL || !pg_tz_acceptable(tz))
	{
		if (series_name)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("time zone \"%s\" of invoice series \"%s\" is not recognized",
							time_zone, series_name)));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" is not recognized", time_zone),
				 errhint("Use a name from pg_timezone_names, such as 'UTC' or 'Europe/Paris'.")));
	}
	return tz;
}

/* The calendar time of ts in the series' time zone. */
static void
series_calendar(const InvoiceSeries *series, TimestampTz ts, struct pg_tm *tm)
{
	pg_tz	   *tz = series_tz(series->time_zone, series->name);
	fsec_t		fsec;
	int			tzoff;

	if (timestamp2tm(ts, &tzoff, tm, &fsec, NULL, tz) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
}

/* The period of ts alone, in "period". */
static void
period_of(const InvoiceSeries *series, TimestampTz ts, char *period)
{
	struct pg_tm tm;

	if (series->reset == SERIES_RESET_NEVER)
	{
		period[0] = '\0';
		return;
	}
	series_calendar(series, ts, &tm);
	if (series->reset == SERIES_RESET_YEARLY)
		snprintf(period, ISEQ_MAX_PERIOD + 1, "%04d", tm.tm_year);
	else
		snprintf(period, ISEQ_MAX_PERIOD + 1, "%04d-%02d", tm.tm_year, tm.tm_mon);
}

/* Does ts fall in "period"? */
static bool
in_period(const InvoiceSeries *series, TimestampTz ts, const char *period)
{
	char		p[ISEQ_MAX_PERIOD + 1];

	period_of(series, ts, p);
	return strcmp(p, period) == 0;
}

#define QUARTER_HOUR	(15 * 60 * USECS_PER_SEC)

/*
 * The first instant of the period after "period", whose calendar time in
 * the series' time zone is tm: midnight of the first day of the next year
 * or month.  A clock that falls back at that midnight makes it occur twice
 * (the first is the end), one that springs forward skips it; local times
 * are resolved by DetermineTimeZoneOffset, and then the end is moved by
 * quarters of an hour until the instant before it is in "period" and the
 * instant itself is not (shifts are whole quarters of an hour).
 */
static TimestampTz
period_end_after(const InvoiceSeries *series, struct pg_tm *tm, const char *period)
{
	TimestampTz end;
	int			tzoff;

	if (series->reset == SERIES_RESET_MONTHLY && tm->tm_mon < 12)
		tm->tm_mon++;
	else
	{
		tm->tm_year++;
		tm->tm_mon = 1;
	}
	tm->tm_mday = 1;
	tm->tm_hour = tm->tm_min = tm->tm_sec = 0;
	tzoff = DetermineTimeZoneOffset(tm, series_tz(series->time_zone, series->name));
	if (tm2timestamp(tm, 0, &tzoff, &end) != 0)
	{
		TIMESTAMP_NOEND(end);
		return end;
	}
	while (in_period(series, end, period))
		end += QUARTER_HOUR;
	while (!in_period(series, end - QUARTER_HOUR, period))
		end -= QUARTER_HOUR;
	return end;
}

/*
 * The period in which a number taken at ts counts: '' for a series that
 * never resets, else the year ('2026') or the month ('2026-11') in the
 * series' time zone.  With period_end, also the first instant of the next
 * period (DT_NOEND for a series that never resets).
 */
void
series_period(const InvoiceSeries *series, TimestampTz ts, char *period,
			  TimestampTz *period_end)
{
	struct pg_tm tm;

	period_of(series, ts, period);
	if (period_end == NULL)
		return;
	if (series->reset == SERIES_RESET_NEVER)
	{
		TIMESTAMP_NOEND(*period_end);
		return;
	}
	series_calendar(series, ts, &tm);
	*period_end = period_end_after(series, &tm, period);
}

/*
 * The first instant of a period of the series, in its time zone: a time to
 * render a number of that period at when the time it was taken is not
 * known (a hole found in the ledger).  For a series that never resets, now.
 */
TimestampTz
series_period_start(const InvoiceSeries *series, const char *period)
{
	struct pg_tm tm;
	int			tzoff;
	TimestampTz start;

	if (series->reset == SERIES_RESET_NEVER || strlen(period) < 4)
		return GetCurrentTimestamp();
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = atoi(period);
	tm.tm_mon = strlen(period) == 7 ? atoi(period + 5) : 1;
	tm.tm_mday = 1;
	tzoff = DetermineTimeZoneOffset(&tm, series_tz(series->time_zone, series->name));
	if (tm2timestamp(&tm, 0, &tzoff, &start) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return start;
}

/*
 * The calendar day of ts in the series' time zone, as yyyymmdd: what the
 * chronological rule compares.
 */
int
series_day(const InvoiceSeries *series, TimestampTz ts)
{
	struct pg_tm tm;

	series_calendar(series, ts, &tm);
	return tm.tm_year * 10000 + tm.tm_mon * 100 + tm.tm_mday;
}

/* Render the display number of invoice_no, reserved at ts. */
void
series_render(const InvoiceSeries *series, int64 invoice_no, TimestampTz ts,
			  char *display_no)
{
	struct pg_tm tm;
	StringInfoData out;
	FormatSummary summary;

	series_calendar(series, ts, &tm);
	initStringInfo(&out);
	format_expand(series->format, invoice_no, &tm, &out, &summary);
	strlcpy(display_no, out.data, ISEQ_MAX_DISPLAY + 1);
	pfree(out.data);
}

void
series_lock_tag(LOCKTAG *tag, int32 series_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) series_id, 0,
						 ISEQ_LOCK_CLASS);
}

/*
 * A transaction that numbers many series would hold one lock per series,
 * and the shared lock table holds only max_locks_per_transaction per
 * backend.  So past ISEQ_SERIES_LOCKS_PER_XACT series, a transaction
 * locks, instead of the series, its group: one of ISEQ_SERIES_LOCK_GROUPS,
 * by the series' id.  A lock of a group stands for the locks of all its
 * series.
 */
#define ISEQ_SERIES_LOCKS_PER_XACT	32
#define ISEQ_SERIES_LOCK_GROUPS		256

static void
group_lock_tag(LOCKTAG *tag, int32 series_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId,
						 (uint32) series_id % ISEQ_SERIES_LOCK_GROUPS, 0,
						 ISEQ_GROUP_LOCK_CLASS);
}

/*
 * The series lock has two strengths.  Whoever takes a number of the series
 * holds it in RowExclusiveLock until the end of the transaction that records
 * the number (or holds its group's, see above); those do not conflict with
 * each other.  alter_series, drop_series and close_period hold the series
 * lock and its group's in ExclusiveLock, in that order, which waits for
 * every transaction that holds a number of the series and keeps new ones
 * out.
 */
static void
series_lock(int32 series_id)
{
	LOCKTAG		tag;

	series_lock_tag(&tag, series_id);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	group_lock_tag(&tag, series_id);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* The lock this transaction takes to number the series: its own, or its group's. */
static void
numbering_lock_tag(LOCKTAG *tag, int32 series_id)
{
	static LocalTransactionId counted_in = InvalidLocalTransactionId;
	static int	nlocked = 0;

	if (counted_in != MyLocalTransactionId)
	{
		counted_in = MyLocalTransactionId;
		nlocked = 0;
	}
	series_lock_tag(tag, series_id);
	if (LockHeldByMe(tag, RowExclusiveLock, false))
		return;
	if (nlocked < ISEQ_SERIES_LOCKS_PER_XACT)
	{
		nlocked++;
		return;
	}
	group_lock_tag(tag, series_id);
}

/*
 * Take the series lock to number, waiting as an ordinary lock waiter: the
 * wait shows in pg_locks, the deadlock detector sees it, and the caller's
 * lock_timeout and statement_timeout bound it.  Returns true if it had to
 * wait: the series may have changed meanwhile.
 */
bool
series_lock_for_numbering(int32 series_id)
{
	LOCKTAG		tag;

	numbering_lock_tag(&tag, series_id);
	if (LockAcquire(&tag, RowExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
		return false;
	(void) LockAcquire(&tag, RowExclusiveLock, false, false);
	return true;
}

/* Does this transaction hold the series lock, or its group's, in any mode? */
bool
series_locked_here(int32 series_id)
{
	LOCKTAG		tag;

	series_lock_tag(&tag, series_id);
	if (LockHeldByMe(&tag, RowExclusiveLock, false) ||
		LockHeldByMe(&tag, ExclusiveLock, false))
		return true;
	group_lock_tag(&tag, series_id);
	return LockHeldByMe(&tag, RowExclusiveLock, false) ||
		LockHeldByMe(&tag, ExclusiveLock, false);
}

/* The same if it is free now (the sequencer never waits for it). */
bool
series_try_lock_for_numbering(int32 series_id)
{
	LOCKTAG		tag;

	series_lock_tag(&tag, series_id);
	return LockAcquire(&tag, RowExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * The lock that serialises the first uses of an idempotency key: whoever
 * records a new key holds it until its transaction ends, so a second user
 * of the key waits, then finds the first one's number.  Keys are hashed;
 * a collision only makes two keys wait for each other.
 */
void
key_lock_tag(LOCKTAG *tag, int32 series_id, const char *key)
{
	uint32		hash = DatumGetUInt32(hash_any((const unsigned char *) key,
											   strlen(key)));

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) series_id, hash,
						 ISEQ_KEY_LOCK_CLASS);
}

/*
 * Wait, as an ordinary lock waiter, until the lock that the sequencer found
 * busy is free, without keeping it: the sequencer takes it next.
 */
void
wait_for_lock(const LOCKTAG *tag)
{
	LOCKMODE	mode = (tag->locktag_field4 == ISEQ_LOCK_CLASS) ?
		RowExclusiveLock : ExclusiveLock;

	(void) LockAcquire(tag, mode, false, false);
	LockRelease(tag, mode, false);
}

/* The columns of series_def a lookup reads, by name: see read_series(). */
typedef enum SeriesColumn
{
	SERIES_COL_ID,
	SERIES_COL_NAME,
	SERIES_COL_START_AT,
	SERIES_COL_RESET,
	SERIES_COL_FORMAT,
	SERIES_COL_TIME_ZONE,
	SERIES_COL_CHRONOLOGICAL,
	SERIES_COL_OWNER,
	SERIES_COL_PRESET,
	SERIES_NCOLS
} SeriesColumn;

static const char *const series_column_names[SERIES_NCOLS] = {
	[SERIES_COL_ID] = "id",
	[SERIES_COL_NAME] = "name",
	[SERIES_COL_START_AT] = "start_at",
	[SERIES_COL_RESET] = "reset",
	[SERIES_COL_FORMAT] = "format",
	[SERIES_COL_TIME_ZONE] = "time_zone",
	[SERIES_COL_CHRONOLOGICAL] = "chronological",
	[SERIES_COL_OWNER] = "owner",
	[SERIES_COL_PRESET] = "preset",
};

/* The number of column "name" of desc. */
static AttrNumber
attnum_by_name(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("invoice_seq.series_def has no column \"%s\"", name),
			 errhint("Update the extension: ALTER EXTENSION invoice_seq UPDATE.")));
}

/* A text column of a series_def row, or NULL. */
static char *
text_column(HeapTuple tuple, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Copy a series_def row into *series.  attnums: by SeriesColumn. */
static void
series_from_row(HeapTuple tuple, TupleDesc desc, const AttrNumber *attnums,
				InvoiceSeries *series)
{
	bool		isnull;

	series->id = DatumGetInt32(heap_getattr(tuple, attnums[SERIES_COL_ID], desc, &isnull));
	strlcpy(series->name, text_column(tuple, desc, attnums[SERIES_COL_NAME]),
			sizeof(series->name));
	series->start_at = DatumGetInt64(heap_getattr(tuple, attnums[SERIES_COL_START_AT],
												  desc, &isnull));
	series->reset = parse_reset(text_column(tuple, desc, attnums[SERIES_COL_RESET]));
	strlcpy(series->format, text_column(tuple, desc, attnums[SERIES_COL_FORMAT]),
			sizeof(series->format));
	strlcpy(series->time_zone, text_column(tuple, desc, attnums[SERIES_COL_TIME_ZONE]),
			sizeof(series->time_zone));
	series->chronological = DatumGetBool(heap_getattr(tuple, attnums[SERIES_COL_CHRONOLOGICAL],
													  desc, &isnull));
	series->owner = DatumGetObjectId(heap_getattr(tuple, attnums[SERIES_COL_OWNER],
												  desc, &isnull));
	series->preset = preset_parse(text_column(tuple, desc, attnums[SERIES_COL_PRESET]));
}

/*
 * Read the series whose column "by" (id or name) equals key, through that
 * column's unique index, as a query would: after a command counter
 * increment, with a fresh snapshot in READ COMMITTED and the transaction's
 * in REPEATABLE READ.  No planner, no executor: a lookup costs an index
 * probe.  Returns false if there is no such series.
 */
static bool
read_series(SeriesColumn by, Datum key, InvoiceSeries *series)
{
	Oid			nspid = get_namespace_oid("invoice_seq", false);
	Relation	rel = table_open(get_relname_relid("series_def", nspid), AccessShareLock);
	const char *index = by == SERIES_COL_ID ? "series_def_pkey" : "series_def_name_key";
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	attnums[SERIES_NCOLS];
	ScanKeyData scankey;
	SysScanDesc scan;
	HeapTuple	tuple;

	for (int i = 0; i < SERIES_NCOLS; i++)
		attnums[i] = attnum_by_name(desc, series_column_names[i]);
	if (by == SERIES_COL_ID)
		ScanKeyInit(&scankey, attnums[by], BTEqualStrategyNumber, F_INT4EQ, key);
	else
		invoice_seq_text_key(&scankey, attnums[by], TextDatumGetCString(key));

	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	scan = systable_beginscan(rel, get_relname_relid(index, nspid), true,
							  GetActiveSnapshot(), 1, &scankey);
	tuple = systable_getnext(scan);
	if (tuple != NULL)
		series_from_row(tuple, desc, attnums, series);
	systable_endscan(scan);
	PopActiveSnapshot();
	table_close(rel, AccessShareLock);
	return tuple != NULL;
}

/* A relcache invalidation: series_def's (or everything's) empties the cache. */
static void
series_cache_invalidate(Datum arg, Oid relid)
{
	if (series_cache != NULL &&
		(relid == InvalidOid || relid == series_cache_relid))
	{
		hash_destroy(series_cache);
		series_cache = NULL;
	}
}

/* The cache, made empty on first use or when full; NULL if none may serve. */
static HTAB *
series_cache_get(void)
{
	static bool callback_registered = false;
	HASHCTL		ctl;

	if (series_shared == NULL || written_here || IsolationUsesXactSnapshot())
		return NULL;
	if (series_cache != NULL && hash_get_num_entries(series_cache) < SERIES_CACHE_MAX)
		return series_cache;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(series_cache_invalidate, (Datum) 0);
		callback_registered = true;
	}
	if (series_cache != NULL)
		hash_destroy(series_cache);
	series_cache_relid = get_relname_relid("series_def",
										   get_namespace_oid("invoice_seq", false));
	ctl.keysize = ISEQ_MAX_SERIES_NAME + 1;
	ctl.entrysize = sizeof(CachedSeries);
	ctl.hcxt = CacheMemoryContext;
	series_cache = hash_create("invoice_seq series", 256, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	return series_cache;
}

/*
 * Look a series up by name, in this backend's cache if it may serve.
 * Returns false if there is no such series.
 */
bool
series_lookup(const char *name, InvoiceSeries *series)
{
	uint64		generation = series_generation();
	HTAB	   *cache = strlen(name) <= ISEQ_MAX_SERIES_NAME ? series_cache_get() : NULL;
	CachedSeries *entry;
	bool		found;

	if (cache != NULL)
	{
		entry = hash_search(cache, name, HASH_FIND, NULL);
		if (entry != NULL && entry->generation == generation)
		{
			*series = entry->series;
			return true;
		}
	}
	if (!read_series(SERIES_COL_NAME, CStringGetTextDatum(name), series))
		return false;
	/* reading may have processed an invalidation that emptied the cache */
	if (cache != NULL && series_cache == cache)
	{
		entry = hash_search(cache, name, HASH_ENTER, &found);
		entry->generation = generation;
		entry->series = *series;
	}
	return true;
}

/* Same as series_lookup(), by id; used by the sequencer. */
bool
series_lookup_by_id(int32 id, InvoiceSeries *series)
{
	return read_series(SERIES_COL_ID, Int32GetDatum(id), series);
}

/* The name of a series' owner role, which DROP ROLE may have removed. */
static const char *
owner_name(Oid owner)
{
	char	   *name = GetUserNameFromId(owner, true);

	return name ? name : "(dropped)";
}

/*
 * Only members of a series' owner role (pg_has_role(..., 'MEMBER')) may use
 * it; superusers are members of every role.  Called in the caller's
 * backend, with the caller's role, before anything is done on its behalf.
 */
void
series_check_member(const InvoiceSeries *series, Oid roleid)
{
	if (!is_member_of_role(roleid, series->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for series \"%s\"", series->name),
				 errdetail("Only members of role \"%s\", which owns the series, may use it.",
						   owner_name(series->owner))));
}

/*
 * Whoever gives a series to a role, or manages a series, must be a member
 * of that role, as ALTER ... OWNER TO requires.
 */
static void
check_may_own(Oid roleid, Oid owner, const char *series)
{
	if (!is_member_of_role(roleid, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for series \"%s\"", series),
				 errdetail("Managing a series owned by role \"%s\" requires membership in it.",
						   owner_name(owner))));
}

/* Look up a series that must exist, raising 42704 otherwise. */
void
series_get(const char *name, InvoiceSeries *series)
{
	if (!series_lookup(name, series))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invoice series \"%s\" does not exist", name)));
}

/*
 * Take the series lock exclusively (alter_series, drop_series,
 * close_period), then read the series again and check the caller's rights
 * again: a change that committed while we waited for the lock (of its
 * owner, say) counts.  With manage, the caller must be allowed to manage
 * the series, else to use it.
 */
void
series_lock_and_reread(InvoiceSeries *series, Oid roleid, bool manage)
{
	series_lock(series->id);
	if (!series_lookup_by_id(series->id, series))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("invoice series \"%s\" does not exist", series->name),
				 errdetail("It was dropped while the request waited.")));
	if (manage)
		check_may_own(roleid, series->owner, series->name);
	else
		series_check_member(series, roleid);
}

/* Insert a new series' definition, as the extension's owner. */
static void
insert_series(const SeriesSettings *settings, SeriesPreset preset, int64 start_at,
			  Interval *stale_after, const char *time_zone, Oid owner)
{
	Datum		values[11];
	char		nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			argtypes[11] = {TEXTOID, INT8OID, TEXTOID, TEXTOID,
		INTERVALOID, TEXTOID, TEXTOID, BOOLOID, REGROLEOID, TEXTOID, TEXTOID};
	Oid			save_userid;
	int			save_sec_context;
	int			rc;

	values[0] = CStringGetTextDatum(settings->name);
	values[1] = Int64GetDatum(start_at);
	values[2] = CStringGetTextDatum(series_reset_name(settings->reset));
	values[3] = CStringGetTextDatum(settings->format);
	values[4] = IntervalPGetDatum(stale_after);
	values[5] = CStringGetTextDatum(time_zone);
	values[6] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	values[7] = BoolGetDatum(settings->chronological);
	values[8] = ObjectIdGetDatum(owner);
	values[9] = CStringGetTextDatum(preset_name(preset));
	nulls[9] = preset == PRESET_NONE ? 'n' : ' ';
	values[10] = settings->validation_code ?
		CStringGetTextDatum(settings->validation_code) : (Datum) 0;
	nulls[10] = settings->validation_code ? ' ' : 'n';

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);
	rc = SPI_execute_with_args("INSERT INTO invoice_seq.series_def"
							   " (name, start_at, reset, format, stale_after,"
							   "  time_zone, created_at, created_by, chronological, owner,"
							   "  preset, validation_code)"
							   " VALUES ($1, $2, $3, $4, $5, $6,"
							   "  pg_catalog.statement_timestamp(), $7, $8, $9, $10, $11)"
							   " ON CONFLICT (name) DO NOTHING",
							   11, argtypes, values, nulls, false, 0);
	invoice_seq_spi_check(rc, SPI_OK_INSERT, "creating a series");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("invoice series \"%s\" already exists", settings->name)));
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
}

/* Check a new series' settings, let its preset fix them, and insert it. */
static void
create_series(SeriesSettings *settings, SeriesPreset preset, int64 start_at,
			  Interval *stale_after, const char *time_zone, Oid owner)
{
	series_check_name(settings->name);
	if (start_at < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid start_at " INT64_FORMAT " for invoice series \"%s\"",
						start_at, settings->name),
				 errdetail("Invoice numbers start at 1 or higher.")));
	preset_apply(preset, settings);
	check_format(settings->format, settings->reset);
	check_stale_after(stale_after);
	(void) series_tz(time_zone, NULL);
	check_may_own(GetUserId(), owner, settings->name);
	note_written_here();
	insert_series(settings, preset, start_at, stale_after, time_zone, owner);
}

/*
 * invoice_seq.create_series(series, start_at, reset, format, stale_after,
 *							 time_zone, chronological, owner)
 */
Datum
invoice_seq_create_series(PG_FUNCTION_ARGS)
{
	SeriesSettings settings;
	int64		start_at;
	Interval   *stale_after;
	char	   *time_zone;
	Oid			owner;

	REQUIRE_ARG(0, "series");
	REQUIRE_ARG(1, "start_at");
	REQUIRE_ARG(2, "reset");
	REQUIRE_ARG(3, "format");
	REQUIRE_ARG(4, "stale_after");
	REQUIRE_ARG(5, "time_zone");
	REQUIRE_ARG(6, "chronological");
	REQUIRE_ARG(7, "owner");

	settings.name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	start_at = PG_GETARG_INT64(1);
	settings.reset = parse_reset(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	settings.format = text_to_cstring(PG_GETARG_TEXT_PP(3));
	settings.format_given = settings.reset_given = true;
	stale_after = PG_GETARG_INTERVAL_P(4);
	time_zone = text_to_cstring(PG_GETARG_TEXT_PP(5));
	settings.chronological = PG_GETARG_BOOL(6);
	settings.validation_code = NULL;
	owner = PG_GETARG_OID(7);

	create_series(&settings, PRESET_NONE, start_at, stale_after, time_zone, owner);
	PG_RETURN_VOID();
}

/*
 * invoice_seq.create_series_preset(series, preset, validation_code,
 *									start_at, format, reset, stale_after,
 *									time_zone, owner)
 */
Datum
invoice_seq_create_series_preset(PG_FUNCTION_ARGS)
{
	SeriesSettings settings;
	SeriesPreset preset;

	REQUIRE_ARG(0, "series");
	REQUIRE_ARG(1, "preset");
	REQUIRE_ARG(3, "start_at");
	REQUIRE_ARG(6, "stale_after");
	REQUIRE_ARG(7, "time_zone");
	REQUIRE_ARG(8, "owner");

	settings.name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	preset = preset_parse(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	if (preset == PRESET_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a preset is required"),
				 errhint("Use create_series() for a series without one.")));
	settings.validation_code = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	settings.format_given = !PG_ARGISNULL(4);
	settings.format = settings.format_given ? text_to_cstring(PG_GETARG_TEXT_PP(4)) : "{n}";
	settings.reset_given = !PG_ARGISNULL(5);
	settings.reset = settings.reset_given ?
		parse_reset(text_to_cstring(PG_GETARG_TEXT_PP(5))) : SERIES_RESET_NEVER;
	settings.chronological = true;

	create_series(&settings, preset, PG_GETARG_INT64(3), PG_GETARG_INTERVAL_P(6),
				  text_to_cstring(PG_GETARG_TEXT_PP(7)), PG_GETARG_OID(8));
	PG_RETURN_VOID();
}

/* invoice_seq.alter_series(series, format, stale_after, chronological, owner) */
Datum
invoice_seq_alter_series(PG_FUNCTION_ARGS)
{
	char	   *name;
	InvoiceSeries series;
	Oid			save_userid;
	int			save_sec_context;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Oid			argtypes[5] = {INT4OID, TEXTOID, INTERVALOID, BOOLOID, REGROLEOID};
	SPIPlanPtr	plan;
	int			rc;

	REQUIRE_ARG(0, "series");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	series_check_name(name);

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);

	series_get(name, &series);
	check_may_own(save_userid, series.owner, series.name);
	series_lock_and_reread(&series, save_userid, true);
	preset_check_alter(&series, !PG_ARGISNULL(1),
					   !PG_ARGISNULL(3) && !PG_GETARG_BOOL(3));
	count_change_at_commit();

	values[0] = Int32GetDatum(series.id);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';
	else
	{
		char	   *format = text_to_cstring(PG_GETARG_TEXT_PP(1));

		check_format(format, series.reset);
		values[1] = CStringGetTextDatum(format);
	}
	if (PG_ARGISNULL(2))
		nulls[2] = 'n';
	else
	{
		check_stale_after(PG_GETARG_INTERVAL_P(2));
		values[2] = PG_GETARG_DATUM(2);
	}
	if (PG_ARGISNULL(3))
		nulls[3] = 'n';
	else
		values[3] = PG_GETARG_DATUM(3);
	if (PG_ARGISNULL(4))
		nulls[4] = 'n';
	else
	{
		check_may_own(save_userid, PG_GETARG_OID(4), series.name);
		values[4] = PG_GETARG_DATUM(4);
	}

	plan = invoice_seq_plan(&alter_plan,
							"UPDATE invoice_seq.series_def"
							" SET format = COALESCE($2, format),"
							"     stale_after = COALESCE($3, stale_after),"
							"     chronological = COALESCE($4, chronological),"
							"     owner = COALESCE($5, owner)"
							" WHERE id OPERATOR(pg_catalog.=) $1",
							5, argtypes);
	rc = invoice_seq_execute(plan, values, nulls, false, 0);
	invoice_seq_spi_check(rc, SPI_OK_UPDATE, "altering a series");

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();

	PG_RETURN_VOID();
}

/*
 * invoice_seq.drop_series(series)
 *
 * Only a series that never handed out a number may be dropped.  The check
 * runs under the series lock, so no allocation of this series is in flight,
 * and with a snapshot taken after the lock was granted (invoice_seq_execute),
 * so it sees every number the sequencer committed.
 */
Datum
invoice_seq_drop_series(PG_FUNCTION_ARGS)
{
	char	   *name;
	InvoiceSeries series;
	Oid			save_userid;
	int			save_sec_context;
	SPIPlanPtr	plan;
	Oid			argtype = INT4OID;
	Datum		arg;
	int			rc;

	REQUIRE_ARG(0, "series");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	series_check_name(name);

	SPI_connect();
	invoice_seq_become_owner(&save_userid, &save_sec_context);

	series_get(name, &series);
	check_may_own(save_userid, series.owner, series.name);
	series_lock_and_reread(&series, save_userid, true);
	count_change_at_commit();
	arg = Int32GetDatum(series.id);

	plan = invoice_seq_plan(&used_plan,
							"SELECT 1 FROM invoice_seq.ledger_entry"
							" WHERE series_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
							1, &argtype);
	rc = invoice_seq_execute(plan, &arg, NULL, false, 1);
	invoice_seq_spi_check(rc, SPI_OK_SELECT, "checking the ledger");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot drop invoice series \"%s\" because it has handed out numbers",
						name),
				 errdetail("Its ledger entries are part of the legal record."),
				 errhint("Void the numbers that were not issued, and stop using the series instead.")));

	plan = invoice_seq_plan(&drop_plan,
							"DELETE FROM invoice_seq.series_def"
							" WHERE id OPERATOR(pg_catalog.=) $1",
							1, &argtype);
	rc = invoice_seq_execute(plan, &arg, NULL, false, 0);
	invoice_seq_spi_check(rc, SPI_OK_DELETE, "dropping a series");

	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();

	PG_RETURN_VOID();
}
