"""Pricing under a tariff's rates: energy per line, standing-charge days, rounding (sans-IO)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
)
from zoneinfo import ZoneInfo

from meterseal.billing.tariff_rates import (
    MINUTES_PER_DAY,
    FlatRate,
    Rates,
    TariffError,
    TieredBlocks,
    TimeOfUse,
    canonical,
)

SECONDS_PER_DAY = 86_400
DEFAULT_MINOR_UNIT = 2
# ISO 4217 currencies whose minor unit is not 1/100.
MINOR_UNITS = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0,
    "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0,
    "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip

# Products and sums must be exact: trap anything that would round silently.
_EXACT = Context(prec=80, traps=[Inexact, Rounded, InvalidOperation, Overflow, DivisionByZero])
_ROUNDING = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])

Interval = tuple[int, int, int]
Use = tuple[str, int, Decimal]  # (line label, energy Wh, price per kWh)


@dataclass(frozen=True)
class ChargeLine:
    """One bill line: energy (Wh; 0 for the standing charge), unit price, rounded amount."""

    label: str
    energy_wh: int
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Charges:
    """A period's charges in `currency`; `total` is the sum of the rounded lines."""

    currency: str
    lines: tuple[ChargeLine, ...]
    total: Decimal


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half-even to the currency's minor unit (2 decimals unless listed)."""
    quantum = Decimal(1).scaleb(-MINOR_UNITS.get(currency, DEFAULT_MINOR_UNIT))
    return amount.quantize(quantum, rounding=ROUND_HALF_EVEN, context=_ROUNDING)


def energy_line(label: str, energy_wh: int, price_per_kwh: Decimal, currency: str) -> ChargeLine:
    """A line for `energy_wh` at `price_per_kwh`."""
    kwh = _EXACT.scaleb(Decimal(energy_wh), -3)
    amount = round_money(_EXACT.multiply(kwh, price_per_kwh), currency)
    return ChargeLine(label, energy_wh, canonical(price_per_kwh), amount)


def standing_line(days: int, per_day: Decimal, currency: str) -> ChargeLine:
    """The standing-charge line for `days` days."""
    label = f"standing charge ({days} day{'' if days == 1 else 's'})"
    amount = round_money(_EXACT.multiply(Decimal(days), per_day), currency)
    return ChargeLine(label, 0, canonical(per_day), amount)


def total_charges(currency: str, lines: Sequence[ChargeLine]) -> Charges:
    """The charges with their total: the sum of the already rounded lines."""
    total = round_money(Decimal(0), currency)
    for line in lines:
        total = _EXACT.add(total, line.amount)
    return Charges(currency, tuple(lines), total)


def standing_days(zone: ZoneInfo, start: int, end: int) -> int:
    """Days of [start, end): its local wall-clock length in days, a part day counting whole.

    Wall-clock time in the tariff's zone, so a 23- or 25-hour DST day is one day and a period
    from local midnight to local midnight counts its calendar days exactly.
    """
    wall = _wall_clock(zone, end) - _wall_clock(zone, start)
    seconds = wall // dt.timedelta(seconds=1)
    return max(1, -(-seconds // SECONDS_PER_DAY))


def _wall_clock(zone: ZoneInfo, timestamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, zone).replace(tzinfo=None)


def energy_use(
    rates: Rates, zone: ZoneInfo, intervals: Iterable[Interval], start: int, end: int
) -> list[Use]:
    """Energy and price per line; lines with energy only, or the first line if there is none."""
    if isinstance(rates, FlatRate):
        return [("energy", _total_energy(intervals, start, end), rates.price_per_kwh)]
    if isinstance(rates, TimeOfUse):
        energy = _tou_energy(rates, zone, intervals, start, end)
        uses = list(zip(rates.labels, energy, rates.prices, strict=True))
    else:
        uses = _tier_use(rates, _total_energy(intervals, start, end))
    return [u for u in uses if u[1] > 0] or uses[:1]


def slot_energy_use(
    rates: Rates, zone: ZoneInfo, slot_energy: Sequence[int], start: int, interval: int
) -> list[Use]:
    """`energy_use` of a grid: slot i is the interval (start + i * interval, interval, Wh).

    The same lines as `energy_use` of those intervals (tests hold it to that), computed per
    label over the grid instead of per interval: a month of 2,880 slots in ~0.1 ms.
    """
    if type(start) is not int or type(interval) is not int:  # also keeps the cache's keys ints
        raise TariffError("intervals", "a grid's start and slot length are integer seconds")
    if interval <= 0 or not slot_energy:
        raise TariffError("intervals", "a grid needs at least one slot of positive length")
    if min(slot_energy) < 0:
        slot = next(i for i, wh in enumerate(slot_energy) if wh < 0)
        raise TariffError("intervals", f"slot {slot} has {slot_energy[slot]} Wh; energy is >= 0")
    if isinstance(rates, FlatRate):
        return [("energy", _whole(sum(slot_energy)), rates.price_per_kwh)]
    if isinstance(rates, TimeOfUse):
        slots = _label_slots(rates, zone, start, interval, len(slot_energy))
        energy = [_whole(sum(map(slot_energy.__getitem__, s))) for s in slots]
        uses = list(zip(rates.labels, energy, rates.prices, strict=True))
    else:
        uses = _tier_use(rates, _whole(sum(slot_energy)))
    return [u for u in uses if u[1] > 0] or uses[:1]


@functools.lru_cache(maxsize=64)
def _label_slots(
    tou: TimeOfUse, zone: ZoneInfo, start: int, interval: int, count: int
) -> tuple[tuple[int, ...], ...]:
    """For each of the tariff's labels, the slots of the grid whose start falls in it.

    A billing run prices every customer's month on the same grid: this is worked out once.
    """
    labels = _tou_labels(tou, zone, ((start + i * interval, interval, 0) for i in range(count)))
    slots: list[list[int]] = [[] for _ in tou.labels]
    for i, label in enumerate(labels):
        slots[label].append(i)
    return tuple(tuple(s) for s in slots)


def _bad_interval(interval: Interval, start: int, end: int) -> TariffError:
    return TariffError(
        "intervals",
        f"{interval!r} is not (start, length > 0, Wh >= 0) inside the period [{start}, {end})",
    )


def _total_energy(intervals: Iterable[Interval], start: int, end: int) -> int:
    total = 0
    for interval in intervals:
        ts, length, wh = interval
        if wh < 0 or length <= 0 or ts < start or ts + length > end:
            raise _bad_interval(interval, start, end)
        total += wh
    return _whole(total)


def _whole(energy_wh: int) -> int:
    # Flags a float that slipped into a sum before it turns into an inexact Decimal.
    if type(energy_wh) is not int:
        raise TariffError("intervals", "energy must be integer Wh")
    return energy_wh


def _tier_use(tiers: TieredBlocks, total: int) -> list[Use]:
    uses: list[Use] = []
    lower = 0
    for label, block in zip(tiers.labels, tiers.blocks, strict=True):
        upper = block.up_to_wh
        inside = (total if upper is None else min(total, upper)) - lower
        uses.append((label, max(inside, 0), block.price_per_kwh))
        if upper is None or total <= upper:
            break
        lower = upper
    return uses


def _tou_energy(
    tou: TimeOfUse, zone: ZoneInfo, intervals: Iterable[Interval], start: int, end: int
) -> list[int]:
    energy = [0] * len(tou.labels)
    checked = _inside(intervals, start, end)
    for interval, label in zip(checked, _tou_labels(tou, zone, checked), strict=True):
        energy[label] += interval[2]
    return [_whole(e) for e in energy]


def _inside(intervals: Iterable[Interval], start: int, end: int) -> list[Interval]:
    out = list(intervals)
    for interval in out:
        ts, length, wh = interval
        if wh < 0 or length <= 0 or ts < start or ts + length > end:
            raise _bad_interval(interval, start, end)
    return out


def _tou_labels(tou: TimeOfUse, zone: ZoneInfo, intervals: Iterable[Interval]) -> list[int]:
    """The label index of each interval: where its start falls in the zone's local week."""
    table = tou.minute_table
    labels = []
    day = None
    offset, steady = 0, True
    for ts, _, _ in intervals:
        if ts // SECONDS_PER_DAY != day:
            day = ts // SECONDS_PER_DAY
            offset, steady = _day_offset(zone, day)
        local_day, second = divmod(ts + (offset if steady else _utc_offset(zone, ts)), 86_400)
        labels.append(table[local_day % 7 * MINUTES_PER_DAY + second // 60])
    return labels


def _day_offset(zone: ZoneInfo, unix_day: int) -> tuple[int, bool]:
    """The zone's UTC offset on a UTC day, and whether it holds all day.

    Equal offsets at both ends of the day mean no transition in between: no tz database zone
    changes its offset twice within 24 hours. A day with a transition is converted per interval.
    """
    first = _utc_offset(zone, unix_day * SECONDS_PER_DAY)
    last = _utc_offset(zone, unix_day * SECONDS_PER_DAY + SECONDS_PER_DAY - 1)
    return first, first == last


def _utc_offset(zone: ZoneInfo, timestamp: int) -> int:
    offset = dt.datetime.fromtimestamp(timestamp, zone).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    return offset // dt.timedelta(seconds=1)
