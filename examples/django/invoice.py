#!/usr/bin/python3
"""Invoice the pending orders with Django's ORM, both ways.

Counter sales are numbered in one step: the number comes from
next_invoice_no() in the INSERT of the invoice (a database expression,
read back with RETURNING), inside transaction.atomic(); it is issued if
the transaction commits, handed out again if it rolls back.

Shop orders go to the e-invoice integrator, which may reject them, so they
take the two-phase way: reserve OUTSIDE transaction.atomic() (Django's
autocommit makes it durable at once), call the integrator, then confirm in
the INSERT of the invoice, or void.

Connection: the PG* variables (see settings.py).  SEED.
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction  # noqa: E402

from billing.models import ConfirmInvoiceNo, Invoice, NextInvoiceNo, Order  # noqa: E402

SEED = os.environ.get("SEED", "15")

SAME_KEY = "retry with the same key"
NEW_KEY = "retry with a new key"
RETRY_TX = "retry the transaction"
FAIL = "fail"


def classify(e):
    """What to do about a DatabaseError (psycopg2 or psycopg 3 underneath)."""
    driver_error = e.__cause__
    sqlstate = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if sqlstate is None and isinstance(e, (OperationalError, InterfaceError)):
        return SAME_KEY  # the connection died: we never saw the answer
    if sqlstate == "40003":
        return SAME_KEY  # statement completion unknown: same as a lost answer
    if sqlstate == "55I01":
        return NEW_KEY   # the key's number was voided: that attempt is over
    if sqlstate in ("40001", "40P01"):
        return RETRY_TX
    return FAIL


class Rejected(Exception):
    pass


class LostAnswer(Exception):
    pass


class FakeIntegrator:
    """Idempotent per invoice number; rejects defective orders; sometimes
    accepts an invoice but its answer is lost.  Chances drawn per number."""

    def __init__(self):
        self.accepted = {}
        self.rejected = self.lost = 0

    def submit(self, display_no, defect):
        chance = random.Random(f"{SEED}:{display_no}")
        time.sleep(chance.uniform(0.002, 0.020))
        if display_no in self.accepted:
            return self.accepted[display_no]
        if defect:
            self.rejected += 1
            raise Rejected(defect)
        ref = self.accepted[display_no] = f"TAX-{len(self.accepted) + 1:06d}"
        if chance.random() < 0.12:
            self.lost += 1
            raise LostAnswer(display_no)
        return ref


def sell_at_counter(order):
    with transaction.atomic():
        invoice = Invoice.objects.create(order=order, series="CASH",
                                         invoice_no=NextInvoiceNo("CASH"))
        # ... the rest of the sale, in the same transaction
    return invoice.invoice_no


def invoice_shop_order(order, integrator):
    """One attempt.  True when the order is invoiced."""
    assert not connection.in_atomic_block, "reserve outside transaction.atomic()"
    key = f"{order.id}:{order.attempt}"
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT period, invoice_no, display_no, status"
                        " FROM invoice_seq.reserve_invoice(%s, %s)", ["DJ", key])
            period, no, display_no, status = cur.fetchone()
    except DatabaseError as e:
        if classify(e) != NEW_KEY:
            raise
        # voided by an earlier try whose answer we lost: a new attempt
        Order.objects.filter(pk=order.pk, attempt=order.attempt).update(
            attempt=order.attempt + 1, defect=None)
        return False
    if status == "issued":
        return True  # an earlier try confirmed it; we lost that answer

    try:
        ref = integrator.submit(display_no, order.defect)
    except LostAnswer:
        return False  # same key next time, same number
    except Rejected as r:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT invoice_seq.void_invoice_no(%s, %s, %s, %s)",
                        ["DJ", no, f"integrator rejected: {r}", period])
            Order.objects.filter(pk=order.pk).update(attempt=order.attempt + 1, defect=None)
        return False

    with transaction.atomic():
        Invoice.objects.create(order=order, series="DJ", period=period, external_ref=ref,
                               invoice_no=ConfirmInvoiceNo("DJ", no, ref, period))
    return True


def main():
    integrator, errors = FakeIntegrator(), []
    for order_id in Order.objects.filter(invoice__isnull=True).order_by("id").values_list("id", flat=True):
        for _ in range(10):
            order = Order.objects.get(pk=order_id)  # its current attempt
            try:
                if order.channel == "counter":
                    sell_at_counter(order)
                    break
                if invoice_shop_order(order, integrator):
                    break
            except DatabaseError as e:
                if classify(e) == FAIL:
                    errors.append(f"order {order_id}: {e}")
                    break
                if classify(e) == SAME_KEY:
                    connection.close()  # Django reconnects on next use
        else:
            errors.append(f"order {order_id}: still not invoiced")
    for e in errors:
        print("error:", e)
    print(f"summary: rejected={integrator.rejected} lost={integrator.lost} errors={len(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
