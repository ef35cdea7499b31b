#!/usr/bin/python3
"""invoice_seq demo: concurrent workers issue invoices "just in time".

For each order, a worker

  1. reserves a number with an idempotency key (committed at once, in a
     transaction of the extension's own: no lock is held afterwards),
  2. sends the invoice to the tax authority's integrator, with no
     transaction open (here a fake one: 5-50 ms, some rejections),
  3. confirms the number together with the application's own invoice row
     in one short transaction, or voids it if the integrator rejected it.

Two failures are simulated:

  * rejection: the order has a data problem; the number is voided (a
    recorded cancellation, not a gap), the order is corrected and sent
    again under a NEW idempotency key, which gets a new number;
  * lost confirm: the integrator accepted the invoice but the worker died
    before confirming; the order is retried later with the SAME key, gets
    the SAME number back, and the integrator answers the same again.

At the end it checks that every order has exactly one issued number, that
the series is dense (start_at..max each present once) and that
check_series() reports nothing.  Exit status 1 if anything is wrong.

Connection: the usual libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE,
PGPASSWORD); any database of a server that preloads invoice_seq.
Settings: DEMO_WORKERS (8), DEMO_INVOICES (400), DEMO_SERIES (DEMO),
DEMO_SEED (seeds the random choices; thread timing still varies).  Needs python3 and psycopg2 only.
"""

import os
import queue
import random
import sys
import threading
import time
from contextlib import contextmanager

import psycopg2

# an empty setting counts as unset (demo/run passes them all on)
SERIES = os.environ.get("DEMO_SERIES") or "DEMO"
WORKERS = int(os.environ.get("DEMO_WORKERS") or "8")
INVOICES = int(os.environ.get("DEMO_INVOICES") or "400")
SEED = os.environ.get("DEMO_SEED") or None

P_DEFECT = 0.08        # orders the integrator rejects on the first attempt
P_LOST_CONFIRM = 0.07  # accepted by the integrator, but the confirm is lost

DEFECTS = ["invalid VAT id", "unknown buyer address", "tax total mismatch"]


def connect(name):
    conn = psycopg2.connect("", application_name=name)
    # Reserve must not run inside a long transaction of ours; autocommit
    # makes every statement its own transaction unless we say BEGIN.
    conn.autocommit = True
    return conn


@contextmanager
def transaction(conn):
    """BEGIN ... COMMIT on an autocommit connection (ROLLBACK on error)."""
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")


def idempotency_key(order_id, attempt):
    # One key per attempt at invoicing an order.  A retry of the SAME attempt
    # (timeout, crash, lost confirm) reuses the key and gets the same number.
    # A new attempt after a rejection needs a NEW key: the old key's number
    # was voided, and handing that dead result back would be wrong
    # (invoice_seq refuses it with SQLSTATE 55I01).  This is the lesson of a
    # real incident, where a reused key brought back a dead result.
    if attempt == 1:
        return f"order-{order_id}"
    return f"order-{order_id}-attempt-{attempt}"


class FakeIntegrator:
    """Stands in for the tax authority's e-invoicing gateway.

    Like a real one, it is idempotent per invoice number: sending a number
    it already accepted returns the same reference, accepts nothing new.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._accepted = {}  # display_no -> reference
        self.calls = 0
        self.busy_s = 0.0  # time spent in calls, all workers together

    def submit(self, display_no, defect):
        latency = random.uniform(0.005, 0.050)  # network + processing
        time.sleep(latency)
        with self._lock:
            self.calls += 1
            self.busy_s += latency
            if display_no in self._accepted:
                return "accepted", self._accepted[display_no]
            if defect:
                return "rejected", defect
            ref = f"TAX-{len(self._accepted) + 1:06d}"
            self._accepted[display_no] = ref
            return "accepted", ref


class WorkerCrash(Exception):
    """Simulated death of a worker between the integrator call and confirm."""


class Retry(Exception):
    """The order goes back to the queue (new attempt after a rejection)."""


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.issued = 0
        self.voided = {}           # reason -> count
        self.lost_confirms = 0     # simulated crashes after acceptance
        self.same_key_retries = 0  # retries that got the same number back
        self.reserve_ms = []
        self.first_number = {}     # key -> number, to check the retries
        self.voided_orders = []    # examples for the report
        self.lost_orders = []
        self.errors = []


def issue_invoice(conn, integrator, stats, order_id):
    """One attempt at invoicing an order: the just-in-time pattern."""
    with conn.cursor() as cur:
        cur.execute("SELECT attempt, defect FROM demo_invoices"
                    " WHERE order_id = %s", (order_id,))
        attempt, defect = cur.fetchone()
        key = idempotency_key(order_id, attempt)

        # 1. Reserve (autocommit).  Durable as soon as it returns: there is
        #    no need to store the number before calling the integrator, a
        #    retry with the same key gets it back.
        t0 = time.monotonic()
        cur.execute("SELECT period, invoice_no, display_no, status"
                    " FROM invoice_seq.reserve_invoice(%s, %s)", (SERIES, key))
        period, number, display_no, status = cur.fetchone()
        reserve_ms = (time.monotonic() - t0) * 1000

    with stats.lock:  # demo bookkeeping, not part of the pattern
        stats.reserve_ms.append(reserve_ms)
        if key in stats.first_number:  # a retry: must get the same number
            if stats.first_number[key] != number:
                raise RuntimeError(f"{key}: got {number} on retry,"
                                   f" {stats.first_number[key]} before")
            stats.same_key_retries += 1
        else:
            stats.first_number[key] = number
    if status == "issued":
        return  # confirmed by an earlier try whose answer we never saw

    # 2. Call the integrator, with no transaction open.
    outcome, detail = integrator.submit(display_no, defect)

    if outcome == "rejected":
        # 3b. Void, and start a new attempt (new key) in the same transaction.
        with transaction(conn) as cur:
            cur.execute("SELECT invoice_seq.void_invoice_no(%s, %s, %s, %s)",
                        (SERIES, number, f"integrator rejected: {detail}",
                         period))
            # A clerk corrects the order; here that happens at once.
            cur.execute("UPDATE demo_invoices SET attempt = attempt + 1,"
                        " defect = NULL, status = 'corrected'"
                        " WHERE order_id = %s", (order_id,))
        with stats.lock:
            stats.voided[detail] = stats.voided.get(detail, 0) + 1
            stats.voided_orders.append(order_id)
        raise Retry()

    if random.random() < P_LOST_CONFIRM:
        with stats.lock:
            stats.lost_confirms += 1
            stats.lost_orders.append(order_id)
        raise WorkerCrash()

    # 3a. Confirm, together with the application's own row, in one short
    #     transaction: both happen or neither does.
    with transaction(conn) as cur:
        cur.execute("UPDATE demo_invoices SET status = 'issued', period = %s,"
                    " invoice_no = %s, display_no = %s, external_ref = %s"
                    " WHERE order_id = %s",
                    (period, number, display_no, detail, order_id))
        cur.execute("SELECT invoice_seq.confirm_invoice_no(%s, %s, %s, %s)",
                    (SERIES, number, detail, period))
    with stats.lock:
        stats.issued += 1


def worker(n, orders, integrator, stats):
    conn = connect(f"invoice_seq demo worker {n}")
    while (order_id := orders.get()) is not None:
        try:
            issue_invoice(conn, integrator, stats, order_id)
        except Retry:
            orders.put(order_id)
        except WorkerCrash:
            # The worker dies and its connection with it.  Whoever picks the
            # order up later finds the same attempt, hence the same key.
            conn.close()
            conn = connect(f"invoice_seq demo worker {n}")
            orders.put(order_id)
        except Exception as e:  # report, keep going
            with stats.lock:
                stats.errors.append(f"order {order_id}: {e!r}")
        finally:
            orders.task_done()
    conn.close()


def check_preloaded(cur):
    """Exit unless the server preloads invoice_seq."""
    cur.execute("SELECT current_setting('shared_preload_libraries')")
    preload = cur.fetchone()[0]
    if "invoice_seq" not in [lib.strip(' "') for lib in preload.split(",")]:
        sys.exit("invoice_seq is not loaded:"
                 " set shared_preload_libraries = 'invoice_seq' and restart")


def setup(cur):
    cur.execute("CREATE EXTENSION IF NOT EXISTS invoice_seq")
    cur.execute("SELECT format, reset FROM invoice_seq.series"
                " WHERE series = %s", (SERIES,))
    row = cur.fetchone()
    if row is None:
        cur.execute("SELECT invoice_seq.create_series(%s, start_at => 1,"
                    " reset => 'yearly', format => 'INV-{YYYY}-{n:6}')",
                    (SERIES,))
        print(f"created series {SERIES}: yearly, INV-{{YYYY}}-{{n:6}}")
    else:
        print(f"reusing series {SERIES}: {row[1]}, {row[0]}")

    # The application's own table: one row per order to invoice.
    cur.execute("""
        CREATE TABLE IF NOT EXISTS demo_invoices (
            order_id     bigint PRIMARY KEY,
            amount       numeric(10, 2) NOT NULL,
            defect       text,      -- simulated: what the integrator rejects
            attempt      int NOT NULL DEFAULT 1,
            status       text NOT NULL DEFAULT 'new',
            period       text,
            invoice_no   bigint,
            display_no   text,
            external_ref text
        )""")
    # New orders for this run, numbered after those of earlier runs.
    cur.execute("SELECT coalesce(max(order_id), 0) FROM demo_invoices")
    first = cur.fetchone()[0] + 1
    orders = list(range(first, first + INVOICES))
    rows = [(o, round(random.uniform(10, 2000), 2),
             random.choice(DEFECTS) if random.random() < P_DEFECT else None)
            for o in orders]
    cur.executemany("INSERT INTO demo_invoices (order_id, amount, defect)"
                    " VALUES (%s, %s, %s)", rows)
    return orders


def run_workers(orders, integrator, stats):
    q = queue.Queue()
    for o in orders:
        q.put(o)
    threads = [threading.Thread(target=worker, args=(n, q, integrator, stats))
               for n in range(1, WORKERS + 1)]
    start = time.monotonic()
    for t in threads:
        t.start()
    marks = [len(orders) * k // 4 for k in (1, 2, 3)]
    while any(t.is_alive() for t in threads) and q.unfinished_tasks:
        time.sleep(0.05)
        if marks and stats.issued >= marks[0]:
            marks.pop(0)
            print(f"  {stats.issued:5d} issued, {sum(stats.voided.values()):3d}"
                  f" voided, {stats.lost_confirms:3d} lost confirms"
                  f"  ({time.monotonic() - start:.1f} s)")
    q.join()
    elapsed = time.monotonic() - start
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join()
    return elapsed


def report(cur, orders, integrator, stats, elapsed):
    problems = []

    def check(ok, what):
        if not ok:
            problems.append(what)
        return ok

    voided = sum(stats.voided.values())
    print(f"\nissued   {stats.issued} invoices in {elapsed:.2f} s"
          f" with {WORKERS} workers: {stats.issued / elapsed:.0f} invoices/s")
    print(f"         {integrator.calls} integrator calls; the workers spent"
          f" {integrator.busy_s / (elapsed * WORKERS):.0%} of their time"
          f" waiting for them")
    ms = sorted(stats.reserve_ms)
    print(f"reserve  median {ms[len(ms) // 2]:.1f} ms,"
          f" p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.1f} ms"
          " (round trip, as the Python threads see it)")
    print(f"voided   {voided}" + "".join(
        f"\n           {c:3d} x integrator rejected: {r}"
        for r, c in sorted(stats.voided.items())))
    print(f"retried  {stats.same_key_retries} lost confirms with the same key,"
          f" same number each time ({stats.lost_confirms} lost)")

    check(not stats.errors, "worker errors:\n  " + "\n  ".join(stats.errors))
    check(stats.issued == len(orders),
          f"{stats.issued} issued for {len(orders)} orders")
    check(stats.same_key_retries == stats.lost_confirms,
          f"{stats.lost_confirms} lost confirms,"
          f" {stats.same_key_retries} same-key retries")

    # Every order of this run: issued in the app, and the same in the ledger.
    cur.execute("""
        SELECT count(*) FILTER (WHERE d.status = 'issued'
                                  AND l.status = 'issued'
                                  AND l.display_no = d.display_no
                                  AND l.external_ref = d.external_ref),
               count(*)
        FROM demo_invoices d
        LEFT JOIN invoice_seq.ledger l
               ON l.series = %s AND l.period = d.period
              AND l.invoice_no = d.invoice_no
        WHERE d.order_id BETWEEN %s AND %s""",
                (SERIES, orders[0], orders[-1]))
    matching, total = cur.fetchone()
    check(matching == total == len(orders),
          f"only {matching} of {total} orders issued and matching the ledger")

    # The ledger, current period.
    cur.execute("SELECT start_at FROM invoice_seq.series WHERE series = %s",
                (SERIES,))
    start_at = cur.fetchone()[0]
    cur.execute("SELECT max(period) FROM invoice_seq.ledger WHERE series = %s",
                (SERIES,))
    period = cur.fetchone()[0]
    cur.execute("""
        SELECT display_no, status, idempotency_key,
               coalesce(external_ref, void_reason, '')
        FROM invoice_seq.ledger WHERE series = %s AND period = %s
        ORDER BY invoice_no""", (SERIES, period))
    ledger = cur.fetchall()
    print(f"\nledger of {SERIES}, period {period}:")
    shown = ledger if len(ledger) <= 10 else ledger[:5] + [None] + ledger[-5:]
    for row in shown:
        print("  ..." if row is None else "  %-16s %-8s %-22s %s" % row)

    # Two orders' stories, as the ledger tells them.
    examples = [("rejected, corrected, sent again under a new key",
                 stats.voided_orders),
                ("confirm lost, retried with the same key: same number",
                 stats.lost_orders)]
    for title, order_ids in examples:
        if not order_ids:
            continue
        order_id = order_ids[0]
        print(f"order {order_id}, {title}:")
        cur.execute("""
            SELECT display_no, status, idempotency_key,
                   coalesce(external_ref, void_reason, '')
            FROM invoice_seq.ledger
            WHERE series = %s
              AND (idempotency_key = %s OR idempotency_key LIKE %s)
            ORDER BY period, invoice_no""",
                    (SERIES, idempotency_key(order_id, 1),
                     idempotency_key(order_id, 1) + "-attempt-%"))
        for row in cur.fetchall():
            print("  %-16s %-8s %-22s %s" % row)

    # Dense: in every period, start_at..max each present exactly once.
    cur.execute("""
        SELECT period, min(invoice_no), max(invoice_no), count(*),
               count(DISTINCT invoice_no), count(DISTINCT display_no),
               count(*) FILTER (WHERE status = 'issued'),
               count(*) FILTER (WHERE status = 'voided'),
               count(*) FILTER (WHERE status = 'reserved')
        FROM invoice_seq.ledger WHERE series = %s
        GROUP BY period ORDER BY period""", (SERIES,))
    print()
    for (p, lo, hi, n, distinct_no, distinct_display,
         n_issued, n_voided, n_reserved) in cur.fetchall():
        print(f"numbers  {p}: {lo}..{hi}, {n} entries ({n_issued} issued,"
              f" {n_voided} voided, {n_reserved} reserved)")
        if check(lo == start_at and n == hi - start_at + 1
                 and distinct_no == distinct_display == n,
                 f"period {p} is not dense: min {lo}, max {hi}, {n} entries,"
                 f" {distinct_no} distinct numbers,"
                 f" {distinct_display} distinct display numbers"):
            print(f"dense    every number {start_at}..{hi} present exactly once")
        check(n_reserved == 0, f"period {p}: {n_reserved} still reserved")

    # The lesson: a voided number's key must not be reused.
    if stats.voided_orders:
        key = idempotency_key(stats.voided_orders[0], 1)
        try:
            cur.execute("SELECT invoice_seq.reserve_invoice_no(%s, %s)",
                        (SERIES, key))
            check(False, f"reusing voided key {key} returned a number")
        except psycopg2.Error as e:
            print(f"reusing voided key {key!r}: ERROR {e.pgcode}\n"
                  f"         {e.diag.message_primary}")
            check(e.pgcode == "55I01", f"reusing voided key: {e.pgcode}")

    cur.execute("SELECT period, invoice_no, problem, detail"
                " FROM invoice_seq.check_series(%s)", (SERIES,))
    rows = cur.fetchall()
    if check(not rows, "check_series reported problems"):
        print("check_series: no problems (dense, nothing stale)")
    for row in rows[:10]:
        print("check_series: period %s, no %s: %s (%s)" % row)

    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    print("\nall invariants hold")
    return 0


def main():
    if WORKERS < 1 or INVOICES < 1:
        sys.exit("DEMO_WORKERS and DEMO_INVOICES must be at least 1")
    if SEED is not None:
        random.seed(SEED)
    conn = connect("invoice_seq demo")
    cur = conn.cursor()
    cur.execute("SHOW server_version")
    print(f"PostgreSQL {cur.fetchone()[0]}, database {conn.info.dbname}")
    check_preloaded(cur)
    orders = setup(cur)
    # reservations inside a block would start it; starting it now keeps
    # the start out of the first worker's latency
    cur.execute("SELECT invoice_seq.start_sequencer()")
    print(f"this database's sequencer runs (pid {cur.fetchone()[0]})")

    print(f"\n{len(orders)} orders (ids {orders[0]}..{orders[-1]}),"
          f" {WORKERS} workers, integrator latency 5-50 ms,"
          f" ~{P_DEFECT:.0%} rejected, ~{P_LOST_CONFIRM:.0%} lost confirms")
    integrator = FakeIntegrator()
    stats = Stats()
    elapsed = run_workers(orders, integrator, stats)
    return report(cur, orders, integrator, stats, elapsed)


if __name__ == "__main__":
    sys.exit(main())
