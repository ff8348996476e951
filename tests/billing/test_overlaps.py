"""A period is never billed twice: a bill in force overlapping it is a refusal, by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.bill import Bill
from meterseal.billing.completeness import Period
from meterseal.billing.ledger import in_force_overlapping, overlaps
from meterseal.billing.policy import REFUSALS, BillRefused
from meterseal.billing.service import bill_id_for
from tests.billing.conftest import PERIOD, Month
from tests.billing.on_disk import TARIFFS, month_on_disk, run

HALF = PERIOD.start + 12 * 3600
FIRST, SECOND = Period(PERIOD.start, HALF), Period(HALF, PERIOD.end)


def _refusal(month: Month, customer: str, period: Period, *, look: bool) -> BillRefused:
    with pytest.raises(BillRefused) as refused:
        month.service().compute(customer, month.customer(customer), period, month.tariff, look=look)
    return refused.value


def test_an_overlapping_period_is_refused_adjacent_ones_are_billed(month: Month) -> None:
    service = month.service()
    customer = month.fleet[1].customer_id  # the customer with two meters
    meters = month.customer(customer)
    first = service.bill_customer(customer, meters, FIRST, month.tariff)
    second = service.bill_customer(customer, meters, SECOND, month.tariff)  # adjacent: billed
    assert second.bill.bill_id == bill_id_for(customer, SECOND)
    for look in (True, False):  # a dry run and a real run are refused alike
        refused = _refusal(month, customer, PERIOD, look=look)
        assert refused.kind == "overlaps"
        assert "overlaps" in REFUSALS
        assert f"overlaps bill {first.bill.bill_id}, {second.bill.bill_id}, in force" in str(
            refused
        )
        assert f"meterseal rebill {first.bill.bill_id} --reason" in str(refused)
    # The other customer's bills are no reason to refuse this one's (and vice versa).
    other = month.fleet[0].customer_id
    in_force = service.in_force_bills(PERIOD)
    assert set(in_force) == {customer}
    billed = service.bill_customer(other, month.customer(other), PERIOD, month.tariff)
    assert billed.bill.bill_id == bill_id_for(other, PERIOD)
    # The same bill again is still "exists" (its own id named).
    again = _refusal(month, customer, FIRST, look=False)
    assert again.kind == "exists"
    assert first.bill.bill_id in str(again)
    assert len(month.bills.log_leaves()) == 3


def test_after_a_credit_and_rebill_the_rebill_is_in_force(month: Month) -> None:
    service = month.service()
    customer = month.fleet[0].customer_id
    meters = month.customer(customer)
    first = service.bill_customer(customer, meters, FIRST, month.tariff)
    correction = service.correct(first.bill.bill_id, meters, month.tariff, "meter read again")
    assert correction.log_indices is not None  # rebill still works: it replaces a credited bill
    rebill_id = correction.rebill.bill_id
    assert service.in_force_bills(FIRST, [customer]) == {customer: [rebill_id]}
    for period in (FIRST, PERIOD):
        refused = _refusal(month, customer, period, look=False)
        assert refused.kind == "overlaps"
        assert f"overlaps bill {rebill_id}, in force" in str(refused)
        assert first.bill.bill_id + "," not in str(refused)  # the credited bill is not in force
    assert len(month.bills.log_leaves()) == 3


def test_the_bill_command_refuses_an_overlap_also_in_a_dry_run(tmp_path: Path) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 1)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    common = ["--tariff", "example-tou", "-d", str(deployment), "--store", store]
    run("bill", "--from", "2026-10-30", "--days", "1", *common)
    bill_id = bill_id_for(fleet[0].customer_id, PERIOD)
    for options in (["--dry-run"], []):
        again = run("bill", "--from", "2026-10-29", "--days", "2", *common, *options, code=1)
        assert f"refused {fleet[0].customer_id}: the period overlaps bill {bill_id}" in again
        assert f"meterseal rebill {bill_id} --reason" in again
        assert "0 bills" in again
        assert "1 refused" in again


def _bill(customer: str, start: int, end: int, kind: str = "bill", refers: str = "") -> Bill:
    """A bill of the log as far as standing and periods go (the rest is never read)."""
    base = Bill.__new__(Bill)
    fields: dict[str, object] = {f.name: None for f in dataclasses.fields(Bill)}
    fields.update(
        bill_id=f"{customer}/{start}-{end}/{kind}{refers}",
        customer_id=customer,
        period=Period(start, end, 1),
        kind=kind,
        refers=(refers, b"") if refers else None,
    )
    for name, value in fields.items():
        object.__setattr__(base, name, value)
    return base


spans = st.tuples(st.integers(0, 40), st.integers(1, 10)).map(lambda t: (t[0], t[0] + t[1]))


@given(st.lists(st.tuples(st.sampled_from("AB"), spans, st.booleans()), max_size=8), spans)
def test_in_force_overlapping_is_every_uncredited_bill_sharing_a_second(
    kept: list[tuple[str, tuple[int, int], bool]], span: tuple[int, int]
) -> None:
    period = Period(*span, 1)
    log: list[tuple[int, Bill]] = []
    expected: dict[str, list[str]] = {}
    for customer, (start, end), credited in kept:
        bill = _bill(customer, start, end)
        bill = dataclasses.replace(bill, bill_id=f"{bill.bill_id}#{len(log)}")
        log.append((len(log), bill))
        if credited:
            credit = _bill(customer, start, end, "credit", bill.bill_id)
            log.append((len(log), credit))
        # Shares a second with [period.start, period.end): by brute force, not by formula.
        if not credited and set(range(start, end)) & set(range(*span)):
            expected.setdefault(customer, []).append(bill.bill_id)
    assert in_force_overlapping(reversed(log), period) == expected
    assert overlaps(Period(0, 5, 1), Period(5, 9, 1)) is False  # adjacent
