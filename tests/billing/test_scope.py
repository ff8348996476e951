"""Which readings a bill counts: signed always (inside the meter's dates), unsigned only to fill."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.completeness import Period
from meterseal.billing.compute import BillPacket
from meterseal.billing.scope import WindowError, check_windows, in_scope
from meterseal.billing.unsigned import UnsignedReading

PERIOD = Period(1_790_812_800, 1_790_812_800 + 96 * 900, 900)


def signed(meter: str, slot: int, counter: int) -> BillPacket:
    t = PERIOD.start + slot * 900
    return BillPacket(meter, counter, t, 10, b"\xd2\x84" + bytes(8))  # a COSE_Sign1's shape


def unsigned(meter: str, slot: int, offset: int = 0) -> BillPacket:
    t = PERIOD.start + slot * 900 + offset
    record = UnsignedReading(meter, t, 900, 7).to_cbor()
    return BillPacket(meter, -t, t, 7, record)


packets = st.lists(
    st.one_of(
        st.builds(signed, st.sampled_from("AB"), st.integers(0, 95), st.integers(0, 10**6)),
        st.builds(unsigned, st.sampled_from("AB"), st.integers(0, 95), st.sampled_from([0, 60])),
    ),
    max_size=60,
)
windows = st.dictionaries(
    st.sampled_from("AB"),
    st.tuples(st.integers(0, 95), st.integers(1, 96))
    .filter(lambda w: w[0] < w[1])
    .map(lambda w: (PERIOD.start + w[0] * 900, PERIOD.start + w[1] * 900)),
)


@given(packets, windows, st.booleans())
def test_signed_are_kept_unsigned_only_fill_and_dates_bound_both(
    given_packets: list[BillPacket], given_windows: dict[str, tuple[int, int]], allow: bool
) -> None:
    kept = in_scope(given_packets, PERIOD, given_windows, allow_unsigned=allow)

    def inside(p: BillPacket) -> bool:
        w = given_windows.get(p.meter_id)
        return w is None or w[0] <= p.timestamp < w[1]

    assert [p for p in kept if p.counter >= 0] == [
        p for p in given_packets if p.counter >= 0 and inside(p)
    ]
    extra = [p for p in kept if p.counter < 0]
    if not allow:
        assert extra == []
    assert all(inside(p) for p in extra)
    signed_slots = {(p.meter_id, PERIOD.slot_of(p.timestamp)) for p in kept if p.counter >= 0}
    unsigned_slots = [(p.meter_id, PERIOD.slot_of(p.timestamp)) for p in extra]
    assert len(set(unsigned_slots)) == len(unsigned_slots)  # one per slot
    assert not signed_slots & set(unsigned_slots)  # a signed reading wins its slot
    if allow:  # every slot an in-window unsigned reading could fill is filled
        could = {
            (p.meter_id, PERIOD.slot_of(p.timestamp))
            for p in given_packets
            if p.counter < 0 and inside(p)
        }
        assert could - signed_slots == set(unsigned_slots)


def test_dates_off_the_slots_or_the_period_are_refused() -> None:
    check_windows(PERIOD, {"A": (PERIOD.start, PERIOD.start + 900)})
    with pytest.raises(WindowError, match="900 s boundary"):
        check_windows(PERIOD, {"A": (PERIOD.start + 1, PERIOD.end)})
    with pytest.raises(WindowError, match="not in the period"):
        check_windows(PERIOD, {"A": (PERIOD.start - 900, PERIOD.end)})
