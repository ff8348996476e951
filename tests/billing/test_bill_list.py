"""A customer's bill list: one query, each bill's verdicts as its audit reports say."""

from __future__ import annotations

from meterseal.bench.months import store_months
from meterseal.billing.completeness import Period
from meterseal.billing.ports import BillSummary
from tests.billing.conftest import ANONYMIZATION_KEY, Month
from tests.conftest import NOW


def test_a_customers_list_shows_each_bills_latest_and_any_clean_audit(month: Month) -> None:
    service = month.service()
    customer, meters = sorted(month.bills.customers().items())[0]
    days = month.period.end - month.period.start
    periods = [Period(month.period.start - k * days, month.period.end - k * days) for k in range(4)]
    mine = [m for m in month.fleet if m.customer_id == customer]
    for p in periods[1:]:  # a period without readings is refused, never billed
        store_months(
            month.store,
            mine,
            p.start,
            p.slots,
            now=NOW,
            anonymization_key=ANONYMIZATION_KEY,
            workers=1,
        )
    ids = [service.bill_customer(customer, meters, p, month.tariff).bill.bill_id for p in periods]
    never, clean, unclean, clean_then_unclean = ids
    for bill_id, verdicts in (
        (clean, [True]),
        (unclean, [False]),
        (clean_then_unclean, [True, False]),
    ):
        for n, ok in enumerate(verdicts):
            month.bills.record_report(bill_id, n, {"n": n}, b"countersigned" if ok else None)
    listed = month.bills.bill_summaries(customer)
    assert [b.bill_id for b in listed] == ids  # oldest log entry first
    by_id = {b.bill_id: (b.audited, b.clean, b.countersigned) for b in listed}
    assert by_id == {
        never: (False, None, False),
        clean: (True, True, True),
        unclean: (True, False, False),
        clean_then_unclean: (True, False, True),
    }
    for summary in listed:
        stored = month.bills.bill(summary.bill_id)
        assert stored is not None
        assert summary[:7] == (
            stored.bill_id,
            stored.period_start,
            stored.period_end,
            stored.issued_at,
            stored.currency,
            stored.total,
            stored.log_index,
        )
        assert type(summary.clean) in (bool, type(None))
        assert type(summary.countersigned) is bool
    assert month.bills.bill_summaries("nobody") == []
    assert BillSummary._fields[:7] == (
        "bill_id", "period_start", "period_end", "issued_at", "currency", "total", "log_index",
    )  # fmt: skip
