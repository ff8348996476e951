"""The administrator's pages, read-only so far: the meters and the published tariffs.

`/portal/admin/meters`: every registered meter (suite, customer, region, registered, revoked,
its integrity verdict and newest reading); `/portal/admin/tariffs`: every published tariff
version with its content digest and rates. Both are `role:administrator`. Changes (provision,
revoke, publish) stay with the CLI (`meterseal meters …`, `meterseal tariffs add`) for now.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from meterseal.billing.tariff import TariffBook
from meterseal.billing.tariff_files import rates_to_dict
from meterseal.portal.fleet import FleetSource
from meterseal.runtime.auth import Rule, access
from meterseal.storage.schema import MeterRow


class Tariffs(Protocol):
    """Where the published tariffs are read (storage's BillStore)."""

    def tariff_book(self) -> TariffBook:
        """Every stored tariff, decoded as stored."""
        ...


@dataclass(frozen=True)
class MeterLine:
    """One meter as the administrator's list shows it."""

    row: MeterRow
    verdict: str  # "trusted", "malicious: reason" or "" (no integrity report)
    last: dt.datetime | None  # its newest reading's timestamp


@dataclass(frozen=True)
class TariffLine:
    """One published tariff version."""

    tariff_id: str
    version: int
    kind: str
    currency: str
    timezone: str
    standing: str
    digest: str
    rates: str  # the rates as indented JSON


class _Render(Protocol):
    def __call__(
        self, request: Request, name: str, status: int = 200, **context: object
    ) -> Response: ...


def add_admin_routes(
    app: FastAPI,
    render: _Render,
    source: FleetSource | None,
    tariffs: Tariffs,
    rule: Rule,
    when: Callable[[float], dt.datetime],
) -> None:
    """Add the administrator's read-only pages."""

    @app.get("/portal/admin/meters", include_in_schema=False, dependencies=[access(rule)])
    def meters(request: Request) -> Response:
        if source is None:
            raise HTTPException(503, "this server reads no fleet store")
        verdicts = {v.meter_id: v for v in source.integrity_verdicts()}
        last = source.last_counters()
        lines = []
        for row in sorted(source.meter_rows(), key=lambda r: r.meter_id):
            verdict = verdicts.get(row.meter_id)
            said = "" if verdict is None else verdict.verdict
            if verdict is not None and verdict.verdict != "trusted":
                said = f"{verdict.verdict}: {verdict.reason}"
            seen = when(last[row.meter_id][1]) if row.meter_id in last else None
            lines.append(MeterLine(row, said, seen))
        return render(request, "staff/meters.html", lines=lines)

    @app.get("/portal/admin/tariffs", include_in_schema=False, dependencies=[access(rule)])
    def tariff_list(request: Request) -> Response:
        lines = [
            TariffLine(
                t.tariff_id,
                t.version,
                t.kind,
                t.currency,
                t.timezone,
                str(t.standing_charge_per_day),
                t.digest().hex(),
                json.dumps(rates_to_dict(t.rates), indent=2, default=str),
            )
            for t in tariffs.tariff_book()
        ]
        return render(request, "staff/tariffs.html", lines=lines)
