"""The staff's pages: the auditor's (audits, countersignatures, the bill log), the operator's, the
administrator's (portal.admin: meters, revoking one, tariffs).

Every route declares its rule (runtime.auth): `role:auditor` pages read the bills API's own
`BillArchive` (reports, bills, the log), `role:operator` pages (portal.fleet) a `FleetSource`
(meters, ingest counters, the quarantine, integrity verdicts, the anonymized regional load); a
customer or a role not named is refused (403 page). Reads of customers' data (reports name a
customer's bill) go to the access log as the API's do.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Protocol

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import Response

from meterseal.accounts.model import Role
from meterseal.billing.bill import Bill, parse_signed_bill
from meterseal.billing.ports import BillArchive, StoredReport
from meterseal.billing.tariff import TariffBook
from meterseal.crypto.signing import VerifyingKey
from meterseal.errors import MetersealError
from meterseal.portal import admin, admin_tools, fleet, staff_views
from meterseal.portal.fleet import FleetSource
from meterseal.runtime.auth import HasRole, Identity, access
from meterseal.transparency.heads import SignedTreeHead

AUDITOR = HasRole(Role.AUDITOR.value)
OPERATOR = HasRole(Role.OPERATOR.value)
ADMINISTRATOR = HasRole(Role.ADMINISTRATOR.value)
BILLS_SHOWN = 100  # the newest log entries the countersign page lists
HEADS_SHOWN = 20


class StaffArchive(BillArchive, Protocol):
    """The bills API's archive, plus what the auditor's pages list (storage's BillStore)."""

    def newest_bills(self, limit: int) -> list[tuple[int, bytes]]:
        """(log index, signed bill) of the newest `limit` log entries, newest first."""
        ...

    def log_heads(self, limit: int = 20) -> list[SignedTreeHead]:
        """The bill log's newest signed heads, newest first."""
        ...

    def tariff_book(self) -> TariffBook:
        """Every stored tariff, decoded as stored."""
        ...


class Render(Protocol):
    """The portal's page renderer (app._Pages.render)."""

    def __call__(
        self, request: Request, name: str, status: int = 200, **context: object
    ) -> Response: ...


class Reads(Protocol):
    """The access log's recorder (accounts.api.AccessRecorder)."""

    def read(self, identity: Identity, route: str, customer_id: str, object_id: str) -> None:
        """Record one read of a customer's data."""
        ...


def add_staff_routes(
    app: FastAPI,
    render: Render,
    bills: StaffArchive,
    reads: Reads,
    billing_key: VerifyingKey | None,
    source: FleetSource | None,
    clock: Callable[[], float] = time.time,
    revocation: admin.MeterRevocation | None = None,
    tools: admin_tools.AdminTools | None = None,
) -> None:
    """Add the auditor's, the operator's and the administrator's pages to the portal app."""

    @app.get("/portal/audit", include_in_schema=False)
    def audit_reports(
        request: Request,
        identity: Annotated[Identity, access(AUDITOR)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        found = bills.reports(None, limit)
        _read_reports(identity, "/portal/audit", [(_customer(r), r.bill_id) for r in found])
        rows = [staff_views.report_row(r) for r in found]
        return render(request, "staff/audit.html", rows=rows, kinds=staff_views.KINDS)

    @app.get("/portal/audit/reports/{report_id}", include_in_schema=False)
    def audit_report(
        request: Request,
        identity: Annotated[Identity, access(AUDITOR)],
        report_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    ) -> Response:
        found = bills.report(report_id)
        if found is None:
            raise HTTPException(404, f"no audit report {report_id}")
        route = "/portal/audit/reports/{report_id}"
        _read_reports(identity, route, [(_customer(found), found.bill_id)])
        return render(request, "staff/report.html", row=staff_views.report_row(found))

    @app.get("/portal/audit/bills", include_in_schema=False)
    def countersigned(request: Request, identity: Annotated[Identity, access(AUDITOR)]) -> Response:
        rows: list[tuple[int, Bill | None, str]] = []
        for index, signed in bills.newest_bills(BILLS_SHOWN):
            try:
                bill = parse_signed_bill(signed)[0]
            except MetersealError as exc:
                rows.append((index, None, f"malformed in the store: {exc}"))
                continue
            rows.append((index, bill, staff_views.standing(bills.reports(bill.bill_id, 20))))
        seen = [(b.customer_id, b.bill_id) for _, b, _ in rows if b is not None]
        _read_reports(identity, "/portal/audit/bills", seen)
        return render(request, "staff/bills.html", rows=rows, shown=BILLS_SHOWN, day=_day)

    @app.get("/portal/audit/log", include_in_schema=False, dependencies=[access(AUDITOR)])
    def bill_log(request: Request) -> Response:
        heads = bills.log_heads(HEADS_SHOWN)
        checks = staff_views.check_heads(heads, bills.log_leaves(), billing_key)
        return render(request, "staff/log.html", checks=checks, keyed=billing_key is not None)

    def _read_reports(identity: Identity, route: str, read: Sequence[tuple[str, str]]) -> None:
        # A report or a bill is one customer's: the access log names each, as the API does.
        for customer, bill_id in dict.fromkeys(read):
            reads.read(identity, route, customer, bill_id)

    fleet.add_operator_routes(app, render, source, clock, OPERATOR)
    admin.add_admin_routes(
        app, render, source, bills, ADMINISTRATOR, _utc, revocation, reads, clock, tools
    )


def _customer(report: StoredReport) -> str:
    # The report names its customer; the bill's id starts with it (CUSTOMER/START-END) too.
    return str(report.report.get("customer") or report.bill_id.partition("/")[0])


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _day(timestamp: int) -> dt.date:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date()
