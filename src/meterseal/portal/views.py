"""What the customer's pages show, computed from stored bills and readings (no I/O here).

A bill's figures come from the signed bill itself (decoded, not verified: the browser verifies),
its daily consumption from the readings on its manifest, drawn as an inline SVG bar chart
computed here, so the page needs no chart script and its strict CSP holds.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from meterseal.billing.bill import Bill
from meterseal.billing.compute import BillPacket
from meterseal.billing.policy import percent

CHART_WIDTH = 640
CHART_HEIGHT = 220
_MARGIN_LEFT, _MARGIN_BOTTOM, _MARGIN_TOP = 56, 28, 12


def day_of(timestamp: int) -> dt.date:
    """The UTC day of a Unix time."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date()


def utc(timestamp: float) -> dt.datetime:
    """A Unix time as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def kwh(wh: int) -> str:
    """Watt-hours as kWh with three decimals, for people."""
    return f"{Decimal(wh) / 1000:.3f}"


@dataclass(frozen=True)
class ChargeRow:
    """One tariff line of a bill."""

    label: str
    kwh: str
    unit_price: str
    amount: str


@dataclass(frozen=True)
class BillFigures:
    """A bill as the customer reads it: period, energy, charges, estimated share."""

    bill_id: str
    kind: str
    period_start: dt.date
    period_end: dt.date  # the last day included
    issued_at: dt.datetime
    energy_kwh: str
    estimated_kwh: str
    estimated_percent: Decimal
    over_limit: Decimal | None
    currency: str
    total: str
    lines: tuple[ChargeRow, ...]
    meters: tuple[str, ...]
    packets: int


def figures(bill: Bill) -> BillFigures:
    """The figures of a decoded bill."""
    return BillFigures(
        bill_id=bill.bill_id,
        kind=bill.kind,
        period_start=day_of(bill.period.start),
        period_end=day_of(bill.period.end - 1),
        issued_at=dt.datetime.fromtimestamp(bill.issued_at, dt.UTC),
        energy_kwh=kwh(bill.energy_wh),
        estimated_kwh=kwh(bill.estimated_wh),
        estimated_percent=percent(bill),
        over_limit=bill.estimated_over_limit,
        currency=bill.charges.currency,
        total=str(bill.charges.total),
        lines=tuple(
            ChargeRow(li.label, kwh(li.energy_wh), str(li.unit_price), str(li.amount))
            for li in bill.charges.lines
        ),
        meters=tuple(m.meter_id for m in bill.meters),
        packets=bill.packets,
    )


def on_manifest(packets: Iterable[BillPacket], keys: set[tuple[str, int]]) -> list[BillPacket]:
    """The packets that are on a bill (its manifest's meter and counter), in time order."""
    found = [p for p in packets if (p.meter_id, p.counter) in keys]
    return sorted(found, key=lambda p: (p.timestamp, p.meter_id, p.counter))


@dataclass(frozen=True)
class Bar:
    """One day's bar of the chart, in SVG user units."""

    day: dt.date
    kwh: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    """A daily consumption bar chart: bars, the y axis's top value and ticks."""

    bars: tuple[Bar, ...]
    top_kwh: str
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = _MARGIN_LEFT
    baseline: int = CHART_HEIGHT - _MARGIN_BOTTOM
    top: int = _MARGIN_TOP


def daily_energy(packets: Sequence[BillPacket]) -> dict[dt.date, int]:
    """Measured Wh per UTC day, days in order."""
    days: dict[dt.date, int] = defaultdict(int)
    for p in packets:
        days[day_of(p.timestamp)] += p.energy_wh
    return dict(sorted(days.items()))


def daily_chart(days: dict[dt.date, int]) -> Chart:
    """The bar chart of `days` (Wh per day), scaled to the largest day."""
    top = max(days.values(), default=0) or 1
    plot_width = CHART_WIDTH - _MARGIN_LEFT - 8
    plot_height = CHART_HEIGHT - _MARGIN_BOTTOM - _MARGIN_TOP
    slot = min(48.0, plot_width / max(1, len(days)))  # a day or two: bars, not slabs
    bars = []
    for i, (day, wh) in enumerate(days.items()):
        height = plot_height * wh / top
        bars.append(
            Bar(
                day,
                kwh(wh),
                round(_MARGIN_LEFT + i * slot + slot * 0.1, 2),
                round(CHART_HEIGHT - _MARGIN_BOTTOM - height, 2),
                round(slot * 0.8, 2),
                round(height, 2),
            )
        )
    return Chart(tuple(bars), kwh(top))
