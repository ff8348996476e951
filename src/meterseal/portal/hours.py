"""A customer's consumption by hour: the chosen day's profile and the period's, as SVG.

Drawn with the bill document's chart code (billing.document_chart), so the page and the PDF
bill lay hours out alike; the figures are the measured Wh of the readings on the bill's
manifest (the signed values), summed per UTC hour. The SVG is markup computed here from
numbers and escaped labels: no chart script, so the portal's strict CSP holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from meterseal.billing.compute import BillPacket
from meterseal.billing.document_chart import bar_chart, to_svg

HOURS = 24


def hour_of(timestamp: int) -> int:
    """The UTC hour (0-23) of a Unix time."""
    return (timestamp // 3600) % HOURS


def hourly_wh(packets: Sequence[BillPacket], day: dt.date | None = None) -> list[int]:
    """Measured Wh per UTC hour, 24 values: of `day` only, or summed over every day."""
    wh = [0] * HOURS
    for p in packets:
        if day is None or dt.datetime.fromtimestamp(p.timestamp, dt.UTC).date() == day:
            wh[hour_of(p.timestamp)] += p.energy_wh
    return wh


@dataclass(frozen=True)
class HourView:
    """The hour section of a bill page: two charts and their figures (Wh per hour)."""

    day: dt.date | None
    day_wh: tuple[int, ...]
    period_wh: tuple[int, ...]
    day_svg: Markup
    period_svg: Markup

    @property
    def peak_hour(self) -> int | None:
        """The hour of the chosen day that used the most energy (none on an empty day)."""
        if not any(self.day_wh):
            return None
        return max(range(HOURS), key=lambda h: (self.day_wh[h], -h))


def _svg(title: str, wh: Sequence[int]) -> Markup:
    names = [f"{h:02d}" for h in range(HOURS)]
    # to_svg escapes every text it writes; the rest is numbers, so the markup is safe.
    return Markup(to_svg(bar_chart(title, [(w, 0) for w in wh], names)))  # noqa: S704


def hour_view(packets: Sequence[BillPacket], day: dt.date | None) -> HourView:
    """The chosen day's hour profile and the whole period's, for `packets` (a bill's)."""
    day_wh = hourly_wh(packets, day) if day is not None else [0] * HOURS
    period_wh = hourly_wh(packets)
    day_title = f"Consumption by hour on {day} (UTC)" if day else "No day chosen"
    return HourView(
        day,
        tuple(day_wh),
        tuple(period_wh),
        _svg(day_title, day_wh),
        _svg("Consumption by hour of the day (UTC), whole period", period_wh),
    )
