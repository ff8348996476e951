"""Completeness of a meter's month and the estimation of what is missing (sans-IO).

A billing period is a grid of slots (15 minutes by default). A reading fills the slot that
holds its timestamp. Every empty slot is a gap, listed on the bill; a slot with more than one
reading is a duplicate: the lowest counter is billed, the others are listed and not billed.
Gaps are filled by a named, configurable `EstimationRule` and marked estimated on the bill.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from meterseal.errors import MetersealError

DEFAULT_INTERVAL = 900
SLOTS_PER_DAY = 86_400 // DEFAULT_INTERVAL


class PeriodError(MetersealError):
    """A billing period is empty, unaligned or otherwise unusable."""


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in Unix seconds, cut into slots of `interval` seconds."""

    start: int
    end: int
    interval: int = DEFAULT_INTERVAL

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.end <= self.start:
            raise PeriodError(f"empty billing period {self.start}..{self.end}")
        if (self.end - self.start) % self.interval:
            raise PeriodError("a billing period must hold a whole number of intervals")

    @classmethod
    def days(cls, first_day: dt.date, days: int, interval: int = DEFAULT_INTERVAL) -> Period:
        """`days` whole UTC days from `first_day` (30 days = 2,880 fifteen-minute slots)."""
        start = int(
            dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=dt.UTC).timestamp()
        )
        return cls(start, start + days * 86_400, interval)

    @property
    def slots(self) -> int:
        """How many readings a complete period holds per meter."""
        return (self.end - self.start) // self.interval

    def slot_of(self, timestamp: int) -> int | None:
        """The slot holding `timestamp`, or None outside the period."""
        if not self.start <= timestamp < self.end:
            return None
        return (timestamp - self.start) // self.interval

    def slot_start(self, slot: int) -> int:
        """The Unix time a slot begins."""
        return self.start + slot * self.interval


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Several readings for one slot: `billed` counts, `extra` are listed and not billed."""

    timestamp: int
    billed: int
    extra: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Completeness:
    """One meter's period: expected and received slots, gaps, duplicates, readings outside."""

    meter_id: str
    expected: int
    received: int
    gaps: tuple[tuple[int, int], ...]  # [start, end) Unix seconds of each run of empty slots
    duplicates: tuple[Duplicate, ...]
    outside: tuple[int, ...]  # counters of readings whose timestamp is outside the period

    @property
    def missing(self) -> int:
        """Empty slots."""
        return self.expected - self.received

    @property
    def complete(self) -> bool:
        """Every slot has exactly one reading and nothing lies outside."""
        return not self.gaps and not self.duplicates and not self.outside


@dataclass(frozen=True, slots=True)
class SlotReading:
    """What completeness needs of a reading: counter, timestamp, energy."""

    counter: int
    timestamp: int
    energy_wh: int


class Slotted(Protocol):
    """What completeness reads of a reading: a `SlotReading`, or a billing packet as it is."""

    @property
    def counter(self) -> int:
        """The meter's counter."""
        ...

    @property
    def timestamp(self) -> int:
        """Start of the interval (Unix seconds)."""
        ...

    @property
    def energy_wh(self) -> int:
        """Energy of the interval (Wh)."""
        ...


def assess(
    meter_id: str, period: Period, readings: Iterable[Slotted]
) -> tuple[Completeness, dict[int, int]]:
    """Completeness of one meter and the billed energy per filled slot."""
    if isinstance(readings, Sequence) and len(readings) == period.slots:
        complete = _complete_month(meter_id, period, readings)
        if complete is not None:
            return complete
    billed: dict[int, Slotted] = {}
    extra: dict[int, list[int]] = {}
    outside = []
    start, end, interval = period.start, period.end, period.interval
    for r in readings:
        timestamp = r.timestamp
        if not start <= timestamp < end:  # `period.slot_of`, inlined: 2,880 calls a month
            outside.append(r.counter)
            continue
        slot = (timestamp - start) // interval
        kept = billed.get(slot)
        if kept is None:
            billed[slot] = r
            continue
        if r.counter < kept.counter:
            billed[slot], r = r, kept
        extra.setdefault(slot, []).append(r.counter)
    duplicates = tuple(
        Duplicate(period.slot_start(s), billed[s].counter, tuple(sorted(c)))
        for s, c in sorted(extra.items())
    )
    result = Completeness(
        meter_id,
        period.slots,
        len(billed),
        _gaps(period, billed),
        duplicates,
        tuple(sorted(outside)),
    )
    return result, {slot: r.energy_wh for slot, r in billed.items()}


def _complete_month(
    meter_id: str, period: Period, readings: Sequence[Slotted]
) -> tuple[Completeness, dict[int, int]] | None:
    """`assess` of readings that start exactly on each slot, in slot order; else None.

    The month almost every meter sends, checked with one list comparison instead of a
    Python step per reading: each slot then holds exactly one reading, nothing is outside.
    """
    if [r.timestamp for r in readings] != _slot_starts(period):
        return None
    energy = dict(enumerate(r.energy_wh for r in readings))
    return Completeness(meter_id, period.slots, period.slots, (), (), ()), energy


@functools.lru_cache(maxsize=16)
def _slot_starts(period: Period) -> list[int]:
    # Read-only by contract: only compared against.
    return list(range(period.start, period.end, period.interval))


def _gaps(period: Period, filled: Mapping[int, object]) -> tuple[tuple[int, int], ...]:
    if len(filled) == period.slots:  # every slot filled (filled holds only slots inside)
        return ()
    runs: list[tuple[int, int]] = []
    first: int | None = None
    for slot in range(period.slots + 1):
        empty = slot < period.slots and slot not in filled
        if empty and first is None:
            first = slot
        elif not empty and first is not None:
            runs.append((period.slot_start(first), period.slot_start(slot)))
            first = None
    return tuple(runs)


def missing_slots(period: Period, gaps: Sequence[tuple[int, int]]) -> list[int]:
    """The slot numbers inside `gaps`."""
    return [
        slot
        for start, end in gaps
        for slot in range(
            (start - period.start) // period.interval, (end - period.start) // period.interval
        )
    ]


class EstimationRule(Protocol):
    """How a gap's energy is estimated; the name goes on the bill."""

    @property
    def name(self) -> str:
        """The rule's name as printed on bills."""
        ...

    def estimate(self, measured: Mapping[int, int], missing: Sequence[int]) -> dict[int, int]:
        """Energy (Wh) for each missing slot, from the measured slots."""
        ...


@dataclass(frozen=True)
class ZeroEstimate:
    """Missing slots count 0 Wh: the customer pays only what was measured."""

    name: str = "zero"

    def estimate(self, measured: Mapping[int, int], missing: Sequence[int]) -> dict[int, int]:
        """0 Wh for each missing slot."""
        return dict.fromkeys(missing, 0)


@dataclass(frozen=True)
class LinearEstimate:
    """A straight line between the nearest measured slots either side (one side: its value)."""

    name: str = "linear"

    def estimate(self, measured: Mapping[int, int], missing: Sequence[int]) -> dict[int, int]:
        """Interpolated energy for each missing slot; 0 Wh if nothing was measured."""
        if not missing:
            return {}
        known = sorted(measured)
        out: dict[int, int] = {}
        for slot in missing:
            before = _nearest(known, slot, -1)
            after = _nearest(known, slot, +1)
            if before is None and after is None:
                out[slot] = 0
            elif before is None or after is None:
                out[slot] = measured[after if before is None else before]  # type: ignore[index]
            else:
                share = (slot - before) / (after - before)
                out[slot] = round(measured[before] + share * (measured[after] - measured[before]))
        return out


@dataclass(frozen=True)
class PreviousDayEstimate:
    """The same slot of the day before when measured (load repeats daily), else linear."""

    name: str = "previous-day"

    def estimate(self, measured: Mapping[int, int], missing: Sequence[int]) -> dict[int, int]:
        """The previous day's slot, falling back to `LinearEstimate`."""
        out = {s: measured[s - SLOTS_PER_DAY] for s in missing if s - SLOTS_PER_DAY in measured}
        rest = [s for s in missing if s not in out]
        out.update(LinearEstimate().estimate(measured, rest))
        return out


ESTIMATION_RULES: dict[str, EstimationRule] = {
    rule.name: rule for rule in (LinearEstimate(), ZeroEstimate(), PreviousDayEstimate())
}


def estimation_rule(name: str) -> EstimationRule:
    """The rule called `name`; PeriodError naming the choices otherwise."""
    try:
        return ESTIMATION_RULES[name]
    except KeyError:
        raise PeriodError(
            f"unknown estimation rule {name!r}; choose one of {', '.join(ESTIMATION_RULES)}"
        ) from None


def _nearest(known: Sequence[int], slot: int, direction: int) -> int | None:
    i = bisect.bisect_left(known, slot)
    if direction < 0:
        return known[i - 1] if i > 0 else None
    return known[i] if i < len(known) else None
