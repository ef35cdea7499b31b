#!/usr/bin/python3
"""A queue worker that invoices orders just in time (psycopg 3).

Orders arrive on a queue (here a queue.Queue standing in for RabbitMQ:
at-least-once delivery, several consumers).  For each order a consumer

  1. reserves a number under an idempotency key, outside any transaction
     block: durable when reserve_invoice() returns, no lock kept;
  2. sends the invoice to the e-invoice integrator, no transaction open;
  3. confirms the number in the INSERT of its own invoice row, or, if the
     integrator rejected the invoice, voids the number and marks the order
     for a new attempt, which will use a NEW key.

A message whose handling fails half-way is delivered again and starts
over at step 1 with the same key: it gets the same number back, or learns
that an earlier try already confirmed it.

Run against a database prepared by schema.sql, with the libpq variables
(PGHOST, PGDATABASE, ...) set.  SEED, WORKERS.
"""

import os
import queue
import random
import threading
import time

import psycopg

SERIES = "PY"
SEED = os.environ.get("SEED", "15")
WORKERS = int(os.environ.get("WORKERS", "4"))


# --- errors ------------------------------------------------------------

SAME_KEY = "retry with the same key"
NEW_KEY = "retry with a new key"
RETRY_TX = "retry the transaction"
FAIL = "fail"


def classify(e):
    """What to do about an error from the database."""
    if isinstance(e, psycopg.OperationalError) and e.sqlstate is None:
        return SAME_KEY  # the connection died: we never saw the answer
    if e.sqlstate == "40003":
        return SAME_KEY  # statement completion unknown: same as a lost answer
    if e.sqlstate == "55I01":
        return NEW_KEY   # the key's number was voided: that attempt is over
    if e.sqlstate in ("40001", "40P01"):
        return RETRY_TX  # serialization failure, deadlock
    return FAIL


# --- the integrator (a fake) --------------------------------------------

class Rejected(Exception):
    pass


class LostAnswer(Exception):
    pass


class FakeIntegrator:
    """Idempotent per invoice number, like a real one: the same number sent
    again gets the same answer.  It rejects defective orders, and sometimes
    accepts an invoice but its answer never reaches us."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = {}  # display_no -> reference
        self.rejected = 0
        self.lost = 0

    def submit(self, display_no, defect):
        # chance is per invoice number, so a run is reproducible whatever
        # the threads' order
        chance = random.Random(f"{SEED}:{display_no}")
        time.sleep(chance.uniform(0.002, 0.020))
        with self.lock:
            if display_no in self.accepted:
                return self.accepted[display_no]
            if defect:
                self.rejected += 1
                raise Rejected(defect)
            ref = f"TAX-{len(self.accepted) + 1:06d}"
            self.accepted[display_no] = ref
            if chance.random() < 0.12:
                self.lost += 1
                raise LostAnswer(display_no)
            return ref


# --- the worker ------------------------------------------------------------

class Redeliver(Exception):
    """Put the message back on the queue."""


def invoice_order(conn, integrator, order_id):
    with conn.cursor() as cur:
        attempt, defect = cur.execute(
            "SELECT attempt, defect FROM orders WHERE id = %s", (order_id,)
        ).fetchone()
        key = f"{order_id}:{attempt}"

        # 1. Reserve (autocommit: committed before the answer comes back).
        try:
            period, no, display_no, status = cur.execute(
                "SELECT period, invoice_no, display_no, status"
                " FROM invoice_seq.reserve_invoice(%s, %s)", (SERIES, key)
            ).fetchone()
        except psycopg.Error as e:
            if classify(e) == NEW_KEY:
                # voided by an earlier try whose answer we lost
                cur.execute("UPDATE orders SET attempt = attempt + 1, defect = NULL"
                            " WHERE id = %s AND attempt = %s", (order_id, attempt))
                raise Redeliver() from e
            raise
    if status == "issued":
        return  # an earlier try confirmed it; we lost that answer

    # 2. The integrator, no transaction open.
    try:
        ref = integrator.submit(display_no, defect)
    except LostAnswer:
        raise Redeliver()  # same attempt, same key, same number
    except Rejected as r:
        # 3b. Void, and open a new attempt, in one transaction.
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT invoice_seq.void_invoice_no(%s, %s, %s, %s)",
                        (SERIES, no, f"integrator rejected: {r}", period))
            cur.execute("UPDATE orders SET attempt = attempt + 1, defect = NULL"
                        " WHERE id = %s", (order_id,))
        raise Redeliver()

    # 3a. Confirm in the statement that writes our own row.
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO invoices (order_id, series, period, invoice_no, display_no, external_ref)"
            " VALUES (%s, %s, %s, invoice_seq.confirm_invoice_no(%s, %s, %s, %s), %s, %s)",
            (order_id, SERIES, period, SERIES, no, ref, period, display_no, ref))


def consume(messages, integrator, errors):
    conn = psycopg.connect(autocommit=True, application_name="invoice worker")
    while (order_id := messages.get()) is not None:
        try:
            invoice_order(conn, integrator, order_id)
        except Redeliver:
            messages.put(order_id)
        except psycopg.Error as e:
            action = classify(e)
            if action == FAIL:
                errors.append(f"order {order_id}: {e.sqlstate} {e}")
            else:
                # same key, new key or new transaction: the order's row in
                # orders says which attempt is current; start over
                messages.put(order_id)
                if conn.broken:
                    conn = psycopg.connect(autocommit=True, application_name="invoice worker")
        finally:
            messages.task_done()
    conn.close()


def main():
    with psycopg.connect() as conn:
        order_ids = [r[0] for r in conn.execute(
            "SELECT id FROM orders o WHERE NOT EXISTS"
            " (SELECT FROM invoices i WHERE i.order_id = o.id) ORDER BY id")]

    messages = queue.Queue()
    for o in order_ids:
        messages.put(o)
    integrator, errors = FakeIntegrator(), []
    threads = [threading.Thread(target=consume, args=(messages, integrator, errors))
               for _ in range(WORKERS)]
    for t in threads:
        t.start()
    messages.join()
    for _ in threads:
        messages.put(None)
    for t in threads:
        t.join()

    for e in errors:
        print("error:", e)
    print(f"summary: orders={len(order_ids)} rejected={integrator.rejected}"
          f" lost={integrator.lost} errors={len(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
