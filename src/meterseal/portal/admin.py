"""The administrator's pages: the meters (and revoking one) and the published tariffs.

`/portal/admin/meters`: every registered meter (suite, customer, region, registered, revoked,
its integrity verdict and newest reading); `/portal/admin/tariffs`: every published tariff
version with its content digest and rates. One change: revoking a meter, in two steps (`GET
/portal/admin/meters/{id}/revoke` shows what it does and a CSRF-protected form, whose POST
revokes it with the store call `meterseal meters revoke` makes) and recorded in the access log
(who, when, route `/portal/admin/meters/{meter_id}/revoke`, the meter's customer, the meter).
Each revocation (and each repeated attempt) is also in the administrators' change log: the
revocation and both entries in one transaction when they share the store. All are
`role:administrator`. Provisioning a meter, publishing a tariff, the CAS and the change log's
page are `portal.admin_tools`'s, added here (saying they cannot change anything when the
portal was given no tools for them).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterseal.accounts.authn import form_fields
from meterseal.accounts.changes import DONE
from meterseal.billing.tariff import TariffBook
from meterseal.billing.tariff_files import rates_to_dict
from meterseal.errors import MetersealError
from meterseal.portal.admin_tools import AdminTools, add_admin_tools
from meterseal.portal.fleet import FleetSource
from meterseal.runtime.auth import Identity, Rule, access, identity_of
from meterseal.storage.schema import MeterRow


class Tariffs(Protocol):
    """Where the published tariffs are read (storage's BillStore)."""

    def tariff_book(self) -> TariffBook:
        """Every stored tariff, decoded as stored."""
        ...


class MeterRevocation(Protocol):
    """Where a meter is revoked (storage's writable Store: `meterseal meters revoke`'s call)."""

    def revoke_meter(self, meter_id: str, now: dt.datetime) -> None:
        """Revoke a meter from `now` (an earlier revocation stands); KeyError if unknown."""
        ...


class Changes(Protocol):
    """Where an administrator's change is recorded (accounts.api.AccessRecorder)."""

    def read(self, identity: Identity, route: str, customer_id: str, object_id: str) -> None:
        """Record that `identity` acted on `object_id` of `customer_id` through `route`."""
        ...


MeterId = Annotated[str, Path(max_length=128)]
REVOKE_ROUTE = "/portal/admin/meters/{meter_id}/revoke"
ACTION = "meter.revoke"
NO_CHANGES = "this portal cannot change meters (it was started without a writable store)"


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
    effective: str  # its effective_from, or "the start"


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
    revocation: MeterRevocation | None = None,
    changes: Changes | None = None,
    clock: Callable[[], float] = time.time,
    tools: AdminTools | None = None,
) -> None:
    """Add the administrator's pages (and the meter revocation, given where it is made)."""
    recorder = add_admin_tools(app, render, tools or AdminTools(), rule, clock)

    @app.get("/portal/admin/meters", include_in_schema=False, dependencies=[access(rule)])
    def meters(request: Request) -> Response:
        return meter_list(request)

    def meter_row(meter_id: str) -> MeterRow:
        if source is None:
            raise HTTPException(503, "this server reads no fleet store")
        found = next((r for r in source.meter_rows() if r.meter_id == meter_id), None)
        if found is None:
            raise HTTPException(404, f"no meter {meter_id!r}")
        return found

    @app.get(REVOKE_ROUTE, include_in_schema=False, dependencies=[access(rule)])
    def confirm_revoke(request: Request, meter_id: MeterId) -> Response:
        row = meter_row(meter_id)
        problem = NO_CHANGES if revocation is None else ""
        return page(request, row, 200, problem)

    @app.post(REVOKE_ROUTE, include_in_schema=False, dependencies=[access(rule)])
    async def revoke(request: Request, meter_id: MeterId) -> Response:
        # The session reached here with the form's CSRF token (accounts.authn); the form also
        # names the meter, so a form for one meter never revokes another.
        form = await form_fields(request)
        row = await run_in_threadpool(meter_row, meter_id)
        if form.get("meter") != meter_id:
            return page(request, row, 400, "the form names another meter: confirm this one")
        if revocation is None:
            raise HTTPException(503, NO_CHANGES)
        if row.revoked_at is not None:
            await recorder.refused(identity_of(request), ACTION, meter_id, "already revoked")
            return page(request, row, 409, "")
        now, identity = dt.datetime.fromtimestamp(clock(), dt.UTC), identity_of(request)

        def revoke_and_log() -> None:  # with the change log's entry, in one transaction
            assert revocation is not None
            revocation.revoke_meter(meter_id, now)
            if changes is not None:
                changes.read(identity, REVOKE_ROUTE, row.customer_id, meter_id)

        entry = (meter_id, DONE, f"customer {row.customer_id}")
        try:
            await recorder.made(identity, ACTION, revoke_and_log, lambda _: entry)
        except MetersealError as exc:
            return page(request, row, 503, f"not revoked: {exc.diagnostics()}")
        return meter_list(request, f"meter {meter_id} revoked")

    def page(request: Request, row: MeterRow, status: int, problem: str) -> Response:
        changeable = revocation is not None
        return render(
            request, "staff/revoke.html", status, row=row, problem=problem, changeable=changeable
        )

    def meter_list(request: Request, done: str = "") -> Response:
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
        return render(request, "staff/meters.html", lines=lines, done=done)

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
                t.effective_from.isoformat() if t.effective_from else "the start",
            )
            for t in tariffs.tariff_book()
        ]
        return render(request, "staff/tariffs.html", lines=lines)
