from django.db import models
from django.db.models import BigIntegerField, Func, Value


class NextInvoiceNo(Func):
    """invoice_seq.next_invoice_no(series): a number taken in the INSERT,
    issued when the transaction commits."""
    function = "invoice_seq.next_invoice_no"
    output_field = BigIntegerField()

    def __init__(self, series):
        super().__init__(Value(series))


class ConfirmInvoiceNo(Func):
    """invoice_seq.confirm_invoice_no(series, no, external_ref, period):
    the reserved number, issued in the INSERT of the invoice row."""
    function = "invoice_seq.confirm_invoice_no"
    output_field = BigIntegerField()

    def __init__(self, series, invoice_no, external_ref, period):
        super().__init__(Value(series), Value(invoice_no), Value(external_ref), Value(period))


class InvoiceNumberField(models.BigIntegerField):
    """Read back with INSERT ... RETURNING: the database chose the value."""
    db_returning = True


class Order(models.Model):
    channel = models.TextField()  # 'shop': sent to the integrator; 'counter': cash sale
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    attempt = models.IntegerField(default=1)  # the idempotency key is id:attempt
    defect = models.TextField(null=True)

    class Meta:
        db_table = "orders"
        managed = False  # schema.sql: the series and the tables go together


class Invoice(models.Model):
    order = models.OneToOneField(Order, models.PROTECT, primary_key=True)
    series = models.TextField()
    period = models.TextField(default="")
    invoice_no = InvoiceNumberField()
    external_ref = models.TextField(null=True)

    class Meta:
        db_table = "invoices"
        managed = False
