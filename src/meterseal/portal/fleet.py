"""The operator's pages: fleet health and the regional load (the anonymized view).

Fleet health (`/portal/fleet`): meters registered, revoked and online (a reading in the last
N hours, by the meter's own timestamps), the ingest rate (readings stored per hour of arrival),
the ingest counters' rejections by reason, the quarantine by reason with its newest packets,
and the integrity monitors' verdicts (a meter judged malicious has its readings quarantined);
the store's readiness (as /readyz) and this server's counters (as /v1/counters).
Regional load (`/portal/fleet/load`): energy per region and UTC hour of one day, from the
anonymized measurements only (no meter or customer id), drawn with the bill document's chart
code as inline SVG (no chart script: the strict CSP holds). Both are `role:operator`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from meterseal.billing.document_chart import bar_chart, to_svg
from meterseal.runtime.auth import Rule, access
from meterseal.storage.fleet import IntegrityVerdict
from meterseal.storage.schema import MeterRow, QuarantinedPacket, RegionalLoad

ACCEPTED = ("stored", "duplicate")  # the ingest counters that are not rejections
QUARANTINE_SHOWN = 20
SILENT_SHOWN = 50
HOURS = 24


class FleetSource(Protocol):
    """What the operator's pages read (storage.fleet.FleetStore implements it)."""

    def not_ready(self) -> str | None:
        """Why the store cannot serve now (the /readyz reason); None when it can."""
        ...

    def meter_rows(self) -> list[MeterRow]:
        """Every registered meter, revoked included."""
        ...

    def last_counters(self) -> dict[str, tuple[int, int]]:
        """Per meter, its highest stored counter and that reading's timestamp."""
        ...

    def counters(self) -> dict[str, int]:
        """Ingest counters: stored, duplicate and one per rejection reason."""
        ...

    def quarantined(self, limit: int = 100) -> list[QuarantinedPacket]:
        """The newest quarantined packets, newest first."""
        ...

    def quarantine_reasons(self) -> dict[str, int]:
        """Packets kept in the quarantine now, per reason."""
        ...

    def integrity_verdicts(self) -> list[IntegrityVerdict]:
        """Each meter's latest integrity verdict."""
        ...

    def received_per_hour(self, since: float, until: float) -> dict[int, int]:
        """Readings stored per hour of arrival in [since, until)."""
        ...

    def regional_load(self, start: int, end: int, bucket_seconds: int = 3600) -> list[RegionalLoad]:
        """Energy and reading count per region and bucket."""
        ...

    def latest_measurement(self) -> int | None:
        """The newest anonymized measurement's timestamp."""
        ...


@dataclass(frozen=True)
class Silent:
    """An active meter with no reading in the window: its newest reading's time, if any."""

    meter_id: str
    region_id: str
    last: dt.datetime | None


@dataclass(frozen=True)
class Health:
    """The fleet's health over the last `hours` hours ending at `now`."""

    now: dt.datetime
    hours: int
    registered: int
    revoked: int
    online: int
    silent: tuple[Silent, ...]  # the first SILENT_SHOWN, longest silent first
    silent_count: int
    received: int  # readings stored in the window
    per_hour: tuple[tuple[dt.datetime, int], ...]  # hours of the window with arrivals
    accepted: tuple[tuple[str, int], ...]
    rejected: tuple[tuple[str, int], ...]  # by reason, most first
    quarantine: tuple[tuple[str, int], ...]  # kept now, by reason, most first
    newest: tuple[QuarantinedPacket, ...]
    verdicts: tuple[IntegrityVerdict, ...]

    @property
    def rate(self) -> float:
        """Readings stored per hour, averaged over the window."""
        return self.received / self.hours

    @property
    def held(self) -> tuple[IntegrityVerdict, ...]:
        """Meters their monitor judged malicious: their readings are quarantined."""
        return tuple(v for v in self.verdicts if v.verdict == "malicious")


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _most_first(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))


def health(
    meters: Sequence[MeterRow],
    last: Mapping[str, tuple[int, int]],
    counters: Mapping[str, int],
    arrivals: Mapping[int, int],
    reasons: Mapping[str, int],
    newest: Sequence[QuarantinedPacket],
    verdicts: Sequence[IntegrityVerdict],
    now: float,
    hours: int,
) -> Health:
    """The fleet's health from the store's answers (sans-IO)."""
    since = now - hours * 3600
    active = [m for m in meters if m.revoked_at is None]
    online = [m for m in active if m.meter_id in last and last[m.meter_id][1] >= since]
    heard = {m.meter_id for m in online}
    silent = sorted(
        (m for m in active if m.meter_id not in heard),
        key=lambda m: (last[m.meter_id][1] if m.meter_id in last else -1, m.meter_id),
    )
    return Health(
        now=_utc(now),
        hours=hours,
        registered=len(meters),
        revoked=len(meters) - len(active),
        online=len(online),
        silent=tuple(
            Silent(
                m.meter_id, m.region_id, _utc(last[m.meter_id][1]) if m.meter_id in last else None
            )
            for m in silent[:SILENT_SHOWN]
        ),
        silent_count=len(silent),
        received=sum(arrivals.values()),
        per_hour=tuple((_utc(h), n) for h, n in sorted(arrivals.items())),
        accepted=tuple((k, counters.get(k, 0)) for k in ACCEPTED),
        rejected=_most_first({k: n for k, n in counters.items() if k not in ACCEPTED}),
        quarantine=_most_first(reasons),
        newest=tuple(newest),
        verdicts=tuple(verdicts),
    )


@dataclass(frozen=True)
class RegionDay:
    """One region's load over one UTC day: Wh per hour, readings, and its chart."""

    region_id: str
    wh: tuple[int, ...]
    readings: int
    svg: Markup

    @property
    def total_kwh(self) -> str:
        """The day's energy in kWh."""
        return f"{sum(self.wh) / 1000:.3f}"

    @property
    def peak(self) -> tuple[int, str]:
        """The busiest hour and its energy (kWh)."""
        hour = max(range(HOURS), key=lambda h: (self.wh[h], -h))
        return hour, f"{self.wh[hour] / 1000:.3f}"


def region_days(rows: Sequence[RegionalLoad], day: dt.date) -> list[RegionDay]:
    """Per region (by id), the day's hourly load and its chart."""
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    wh: dict[str, list[int]] = defaultdict(lambda: [0] * HOURS)
    readings: dict[str, int] = defaultdict(int)
    for row in rows:
        hour = (row.bucket_start - start) // 3600
        if 0 <= hour < HOURS:
            wh[row.region_id][hour] += row.energy_wh
            readings[row.region_id] += row.readings
    names = [f"{h:02d}" for h in range(HOURS)]
    out = []
    for region in sorted(wh):
        title = f"Load of region {region} per hour, {day.isoformat()} (UTC)"
        chart = bar_chart(title, [(w, 0) for w in wh[region]], names)
        # to_svg escapes every text it writes (the region id too); the rest is numbers.
        svg = Markup(to_svg(chart))  # noqa: S704
        out.append(RegionDay(region, tuple(wh[region]), readings[region], svg))
    return out


class _Render(Protocol):
    def __call__(
        self, request: Request, name: str, status: int = 200, **context: object
    ) -> Response: ...


def add_operator_routes(
    app: FastAPI,
    render: _Render,
    source: FleetSource | None,
    clock: Callable[[], float],
    rule: Rule,
) -> None:
    """Add the operator's pages; without a source they say the store is not attached (503)."""

    def _source() -> FleetSource:
        if source is None:
            raise HTTPException(503, "this server reads no fleet store")
        return source

    @app.get("/portal/fleet", include_in_schema=False, dependencies=[access(rule)])
    def fleet_health(
        request: Request, hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24
    ) -> Response:
        fleet, now = _source(), clock()
        down = fleet.not_ready()
        if down is not None:  # the readiness check's reason, not a stack of query errors
            raise HTTPException(503, f"the store is not ready: {down}")
        report = health(
            fleet.meter_rows(),
            fleet.last_counters(),
            fleet.counters(),
            fleet.received_per_hour(now - hours * 3600, now),
            fleet.quarantine_reasons(),
            fleet.quarantined(QUARANTINE_SHOWN),
            fleet.integrity_verdicts(),
            now,
            hours,
        )
        # This server's own counters (/v1/counters): API outcomes and connection refusals.
        service = sorted(request.app.state.counts.items())
        return render(request, "staff/fleet.html", h=report, when=_utc, service=service)

    @app.get("/portal/fleet/load", include_in_schema=False, dependencies=[access(rule)])
    def regional_load(
        request: Request, day: Annotated[str | None, Query(max_length=10)] = None
    ) -> Response:
        fleet = _source()
        try:
            chosen = dt.date.fromisoformat(day) if day else None
        except ValueError:
            raise HTTPException(422, f"day {day!r}: YYYY-MM-DD") from None
        if chosen is None:
            latest = fleet.latest_measurement()
            chosen = _utc(latest if latest is not None else clock()).date()
        start = int(dt.datetime.combine(chosen, dt.time(), dt.UTC).timestamp())
        regions = region_days(fleet.regional_load(start, start + 86_400, 3600), chosen)
        return render(request, "staff/load.html", regions=regions, day=chosen)
