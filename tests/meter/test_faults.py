"""Fault plans: each fault does to the wire what its name says."""

from __future__ import annotations

import random

from meterseal.meter.faults import Fault, FaultPlan, Planned, flip_bit, plan_readings, wire_order
from meterseal.model import Reading


def _sealed(faults: list[Fault]) -> list[tuple[Planned, bytes]]:
    return [(Planned(Reading("M", i, 0, 900, 1), f), bytes([i]) * 4) for i, f in enumerate(faults)]


def test_honest_plan_sends_everything_in_order() -> None:
    sealed = _sealed([Fault.NONE] * 5)
    assert [d for _, d in wire_order(sealed, random.Random(1))] == [d for _, d in sealed]


def test_each_fault_changes_the_wire_as_named() -> None:
    sealed = _sealed(
        [
            Fault.NONE,
            Fault.DROP,
            Fault.DUPLICATE,
            Fault.REORDER,
            Fault.NONE,
            Fault.CORRUPT,
            Fault.REPLAY,
        ]
    )
    wire = wire_order(sealed, random.Random(1))
    data = [d for _, d in wire]
    p = [d for _, d in sealed]
    assert p[1] not in data  # dropped
    assert data.count(p[2]) == 2  # duplicated
    assert data.index(p[4]) < data.index(p[3])  # reordered with its successor
    assert p[5] not in data  # corrupted
    corrupted = next(d for f, d in wire if f is Fault.CORRUPT)
    assert sum(bin(a ^ b).count("1") for a, b in zip(corrupted, p[5], strict=True)) == 1
    replayed = [d for f, d in wire if f is Fault.REPLAY and d != p[6]]
    assert len(replayed) == 1
    assert replayed[0] in p[:6]


def test_clock_skew_and_fraud_rewrite_the_reading_before_sealing() -> None:
    readings = [Reading("M", i, 1000, 900, 10) for i in range(50)]
    plan = FaultPlan(clock_skew=1.0, skew_seconds=3600)
    planned = plan_readings(
        readings,
        plan,
        random.Random(2),
        fraud=lambda r: Reading(r.meter_id, r.counter, r.timestamp, r.interval, 1),
    )
    assert all(p.fault is Fault.CLOCK_SKEW for p in planned)
    assert {p.reading.timestamp for p in planned} == {4600}
    assert {p.reading.energy_wh for p in planned} == {1}


def test_fault_rates_are_respected() -> None:
    rng = random.Random(3)
    plan = FaultPlan(drop=0.1, corrupt=0.1)
    picks = [plan.pick(rng) for _ in range(10_000)]
    assert 800 < picks.count(Fault.DROP) < 1200
    assert 800 < picks.count(Fault.CORRUPT) < 1200
    assert picks.count(Fault.DUPLICATE) == 0
    assert len(flip_bit(b"abc", rng)) == 3
