"""Completeness of a meter's month, gaps, duplicates and the estimation rules."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.completeness import (
    Duplicate,
    LinearEstimate,
    Period,
    PeriodError,
    PreviousDayEstimate,
    SlotReading,
    ZeroEstimate,
    assess,
    estimation_rule,
    missing_slots,
)

DAY = Period.days(dt.date(2026, 10, 1), 1)
MONTH = Period.days(dt.date(2026, 10, 1), 30)


def _readings(period: Period, slots: list[int], energy: int = 100) -> list[SlotReading]:
    return [SlotReading(1000 + s, period.slot_start(s), energy) for s in slots]


def test_a_thirty_day_month_expects_2880_readings() -> None:
    assert MONTH.slots == 2880
    result, measured = assess("M1", MONTH, _readings(MONTH, list(range(2880))))
    assert (result.expected, result.received, result.complete) == (2880, 2880, True)
    assert sum(measured.values()) == 288_000


def test_gaps_are_listed_as_runs_of_missing_intervals() -> None:
    present = [s for s in range(96) if s not in (0, 10, 11, 12, 95)]
    result, _ = assess("M1", DAY, _readings(DAY, present))
    start = DAY.start
    assert result.gaps == (
        (start, start + 900),
        (start + 9000, start + 11700),
        (start + 85500, DAY.end),
    )
    assert result.missing == 5
    assert missing_slots(DAY, result.gaps) == [0, 10, 11, 12, 95]


def test_duplicates_bill_the_lowest_counter_and_list_the_rest() -> None:
    readings = _readings(DAY, list(range(96)))
    readings += [
        SlotReading(5000, DAY.slot_start(7) + 60, 999),
        SlotReading(3, DAY.slot_start(7), 1),
    ]
    result, measured = assess("M1", DAY, readings)
    assert result.duplicates == (Duplicate(DAY.slot_start(7), 3, (1007, 5000)),)
    assert measured[7] == 1
    assert result.received == 96
    assert not result.gaps


def test_readings_outside_the_period_are_named() -> None:
    readings = [*_readings(DAY, [0]), SlotReading(7, DAY.end, 5), SlotReading(6, DAY.start - 1, 5)]
    result, _ = assess("M1", DAY, readings)
    assert result.outside == (6, 7)


def test_estimation_rules() -> None:
    measured = {0: 100, 4: 500, 96: 40}
    assert LinearEstimate().estimate(measured, [1, 2, 3]) == {1: 200, 2: 300, 3: 400}
    assert LinearEstimate().estimate({5: 70}, [0, 9]) == {0: 70, 9: 70}
    assert LinearEstimate().estimate({}, [0]) == {0: 0}
    assert ZeroEstimate().estimate(measured, [1, 2]) == {1: 0, 2: 0}
    assert PreviousDayEstimate().estimate(measured, [100, 97]) == {100: 500, 97: 40}
    assert estimation_rule("previous-day").name == "previous-day"
    with pytest.raises(PeriodError, match="linear"):
        estimation_rule("guess")


def test_periods_must_hold_whole_intervals() -> None:
    with pytest.raises(PeriodError):
        Period(0, 1000, 900)
    with pytest.raises(PeriodError):
        Period(10, 10)


@given(st.sets(st.integers(0, 95)), st.sampled_from(["linear", "zero", "previous-day"]))
def test_gaps_and_received_always_add_up(present: set[int], rule_name: str) -> None:
    result, measured = assess("M1", DAY, _readings(DAY, sorted(present)))
    missing = missing_slots(DAY, result.gaps)
    assert result.received + len(missing) == DAY.slots
    assert set(missing).isdisjoint(present)
    estimated = estimation_rule(rule_name).estimate(measured, missing)
    assert set(estimated) == set(missing)
    assert all(wh >= 0 for wh in estimated.values())


@st.composite
def near_complete_days(draw: st.DrawFn) -> list[SlotReading]:
    """A day's 96 readings on the grid, with a few edits that break the grid or not."""
    readings = _readings(DAY, list(range(DAY.slots)))
    edits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["shift", "drop", "duplicate", "outside", "swap", "energy"]),
                st.integers(0, DAY.slots - 1),
                st.integers(1, 899),
            ),
            max_size=3,
        )
    )
    for kind, i, amount in edits:
        i %= len(readings)
        r = readings[i]
        if kind == "shift":
            readings[i] = SlotReading(r.counter, r.timestamp + amount, r.energy_wh)
        elif kind == "drop":
            del readings[i]
        elif kind == "duplicate":
            readings.insert(i, SlotReading(r.counter - amount, r.timestamp, amount))
        elif kind == "outside":
            readings[i] = SlotReading(r.counter, DAY.end + amount, r.energy_wh)
        elif kind == "swap":
            j = (i + amount) % len(readings)
            readings[i], readings[j] = readings[j], readings[i]
        else:
            readings[i] = SlotReading(r.counter, r.timestamp, amount)
        if not readings:
            break
    return readings


@given(near_complete_days())
def test_assessing_a_list_at_once_is_assessing_it_reading_by_reading(
    readings: list[SlotReading],
) -> None:
    # A list of a period's size may take the whole-month check; an iterator never does.
    assert assess("M1", DAY, readings) == assess("M1", DAY, iter(readings))


def test_a_complete_month_on_the_grid_is_complete_with_every_energy() -> None:
    readings = [SlotReading(7 + s, MONTH.slot_start(s), s % 13) for s in range(MONTH.slots)]
    result, measured = assess("M1", MONTH, readings)
    assert result.complete
    assert result.received == MONTH.slots
    assert measured == {s: s % 13 for s in range(MONTH.slots)}
    assert (result, measured) == assess("M1", MONTH, iter(readings))
