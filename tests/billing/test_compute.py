"""A computed bill's charges are the tariff's price of every measured and estimated interval."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.completeness import (
    ESTIMATION_RULES,
    EstimationRule,
    Period,
    assess,
    missing_slots,
)
from meterseal.billing.compute import (
    BillCheckError,
    BillPacket,
    BillRequest,
    compute_bill,
    packets_of,
)
from meterseal.billing.tariff import Tariff, builtin_tariffs, price

DAY = Period.days(dt.date(2026, 10, 24), 2)  # over the night Berlin leaves summer time
TARIFFS = [builtin_tariffs().get(t, 1) for t in ("example-flat", "example-tiered", "example-tou")]


@st.composite
def meter_days(draw: st.DrawFn, meter_id: str) -> list[BillPacket]:
    """A meter's readings: most slots, some missing, some twice, one maybe outside."""
    slots = draw(st.sets(st.integers(0, DAY.slots - 1), min_size=0, max_size=DAY.slots))
    if draw(st.booleans()):
        slots |= set(range(DAY.slots))  # a complete period, the common case
    twice = draw(st.sets(st.sampled_from(sorted(slots)), max_size=3)) if slots else set()
    packets = [
        BillPacket(meter_id, 1000 + s, DAY.slot_start(s), draw(st.integers(0, 5000)), b"%d" % s)
        for s in sorted(slots)
    ]
    packets += [BillPacket(meter_id, 9000 + s, DAY.slot_start(s) + 60, 7, b"x") for s in twice]
    if draw(st.booleans()):
        packets.append(BillPacket(meter_id, 50, DAY.end + 900, 10**6, b"late"))
    return packets


def _intervals(request: BillRequest, packets: list[BillPacket]) -> list[tuple[int, int, int]]:
    """The priced intervals by the definition: each meter's measured and estimated slots."""
    out = []
    for meter_id in request.meter_ids:
        mine = [p for p in packets if p.meter_id == meter_id]
        result, measured = assess(meter_id, DAY, iter(mine))
        estimated = request.estimation.estimate(measured, missing_slots(DAY, result.gaps))
        out += [(DAY.slot_start(s), DAY.interval, wh) for s, wh in (measured | estimated).items()]
    return out


@given(
    meter_days("M-1"),
    meter_days("M-2"),
    st.sampled_from(TARIFFS),
    st.sampled_from(sorted(ESTIMATION_RULES.values(), key=lambda r: r.name)),
)
def test_charges_are_the_price_of_each_meters_measured_and_estimated_slots(
    first: list[BillPacket], second: list[BillPacket], tariff: Tariff, rule: EstimationRule
) -> None:
    packets = first + second
    request = BillRequest("b", "c", ("M-1", "M-2"), DAY, tariff, rule, 0)
    bill = compute_bill(request, packets).bill
    expected = price(tariff, _intervals(request, packets), period_start=DAY.start,
                     period_end=DAY.end)  # fmt: skip
    assert bill.charges == expected
    assert [m.meter_id for m in bill.meters] == ["M-1", "M-2"]
    assert sum(m.measured_wh + m.estimated_wh for m in bill.meters) == sum(
        line.energy_wh for line in expected.lines
    )


def test_rows_become_bill_packets_field_by_field() -> None:
    first = ("M-1", 7, 1_700_000_000, 120, b"signed")
    second: list[object] = ["M-2", 8, 1_700_000_900, 0, b"s2"]  # a row may be any sequence
    packets = packets_of([first, second])
    assert packets == [BillPacket(*first), BillPacket("M-2", 8, 1_700_000_900, 0, b"s2")]
    assert all(type(p) is BillPacket for p in packets)
    assert (packets[1].meter_id, packets[1].timestamp, packets[1].signed_original) == (
        "M-2",
        1_700_000_900,
        b"s2",
    )
    assert packets_of([]) == []


def test_rows_of_another_width_are_refused() -> None:
    with pytest.raises(TypeError, match="5 columns, not 4"):
        packets_of([("M-1", 7, 1_700_000_000, 120)])


class _Overreaching:
    """An estimation rule that also 'estimates' a slot that was measured."""

    name = "overreaching"

    def estimate(self, measured: Mapping[int, int], missing: Sequence[int]) -> dict[int, int]:
        return dict.fromkeys([*missing, *list(measured)[:1]], 1)


def test_a_rule_estimating_more_than_the_gaps_is_refused() -> None:
    packets = [BillPacket("M-1", s, DAY.slot_start(s), 5, b"x") for s in range(0, DAY.slots, 2)]
    request = BillRequest("b", "c", ("M-1",), DAY, TARIFFS[0], _Overreaching(), 0)
    with pytest.raises(BillCheckError, match="did not estimate exactly the gaps"):
        compute_bill(request, packets)


def test_negative_energy_is_refused_even_beside_another_meters_energy() -> None:
    first = [BillPacket("M-1", s, DAY.slot_start(s), 10, b"a") for s in range(DAY.slots)]
    second = [BillPacket("M-2", s, DAY.slot_start(s), 10, b"b") for s in range(DAY.slots)]
    second[7] = second[7]._replace(energy_wh=-3)  # a column altered in the store
    rule = ESTIMATION_RULES["zero"]
    request = BillRequest("b", "c", ("M-1", "M-2"), DAY, TARIFFS[0], rule, 0)
    with pytest.raises(BillCheckError, match="meter M-2: negative energy"):
        compute_bill(request, first + second)


def test_a_customer_who_moved_in_mid_period_pays_the_standing_charge_from_then() -> None:
    from meterseal.billing.completeness import LinearEstimate
    from meterseal.billing.compute import compute_bill, standing_span

    month = Period.days(dt.date(2026, 11, 6), 30)
    move_in = month.start + 29 * 86_400  # the last day: one day of standing charge
    flat = TARIFFS[0]
    windows = (("M-1", move_in, month.end), ("M-2", move_in + 900, month.end))
    assert standing_span(month, ("M-1", "M-2"), windows) == (move_in, month.end)
    assert standing_span(month, ("M-1", "M-2", "M-3"), windows) is None  # M-3: all month
    assert standing_span(month, ("M-1",), (("M-1", month.start, month.end),)) is None
    packets = [
        BillPacket(m, (move_in - month.start) // 900 + i, move_in + 900 * i, 10, bytes(4))
        for m in ("M-1", "M-2")
        for i in range(1, 96)
    ]
    request = BillRequest("b", "c", ("M-1", "M-2"), month, flat, LinearEstimate(), 0, windows)
    bill = compute_bill(request, packets).bill
    assert bill.standing == (move_in, month.end)
    assert bill.charges.lines[-1].label == "standing charge (1 day)"
    assert bill.charges.lines[-1].amount == flat.standing_charge_per_day
    # A bill that does not say so (signed before this rule) is recomputed for the whole period.
    old = compute_bill(dataclasses.replace(request, prorate_standing=False), packets).bill
    assert old.standing is None
    assert old.charges.lines[-1].label == "standing charge (30 days)"
    # On the bill only when set: bills signed before it keep their bytes.
    from meterseal.billing.bill import Bill

    assert Bill.from_cbor(bill.to_cbor()) == bill
    assert b"hstanding\x82" in bill.to_cbor()  # the key (text, 8 bytes) and its 2-array
    assert b"hstanding" not in old.to_cbor()
