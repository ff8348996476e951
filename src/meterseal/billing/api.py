"""HTTP API of the billing side: customers' bills and reading proofs, the bill log, audit reports.

`add_billing_routes` adds the routes to an app made by the runtime's app factory (`service_app`:
/healthz, /v1/counters, OpenAPI); `create_billing_app` does both; `meterseal bills serve` serves
it from a read-only store. JSON by default: hashes hex, other bytes (COSE, certificates, proof
files) base64. Signed objects (bills, reading proofs, tree heads) come as raw bytes when Accept
prefers `application/cbor` (or `application/cose`) to JSON. Nothing is verified for the caller.
Bill ids contain a '/' (CUSTOMER/START-END): routes take them as is or percent-encoded. Errors
are `{"detail": ...}`: 404 unknown id, 409 a stored reading no longer matches its bill, 422 bad
parameters, 503 store unreachable. docs/billing.md lists the routes.

Who may read what (docs/security.md, "People and roles"): a customer their own readings,
bills, proofs and bill list, an auditor every bill and the audit reports; the bill log's heads and
consistency proofs are public. A customer asking for another customer's bill, proof or list
gets exactly the 404 of an id that does not exist. Every read of a customer's data is
recorded in the access log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from meterseal.accounts.api import AccessRecorder, add_account_routes
from meterseal.accounts.authn import AccountAuthenticator
from meterseal.accounts.model import AccessLog, Role
from meterseal.billing.api_views import (
    CBOR_TYPES,
    COSE_TYPES,
    BillEntry,
    BillView,
    ConsistencyView,
    CustomerBills,
    CustomerReadings,
    Detail,
    InclusionView,
    ProofView,
    ReadingView,
    ReportList,
    ReportView,
    TreeHeadView,
    head_response,
    negotiated,
)
from meterseal.billing.bill import Bill, parse_signed_bill
from meterseal.billing.ports import BillArchive, StoredBill, StoredReport, countersigned_of
from meterseal.billing.proofs import ProofConflict, ProofNotFound
from meterseal.errors import MetersealError, StorageError
from meterseal.runtime.auth import PUBLIC, AnyRole, HasRole, Rule, access, identity_of
from meterseal.runtime.http import service_app
from meterseal.runtime.refusals import answer_store_unavailable
from meterseal.transparency.heads import SignedTreeHead
from meterseal.transparency.merkle import MerkleTree

MAX_INT = 2**63 - 1  # BIGINT: larger ids or sizes cannot exist and would overflow the driver
MAX_READING_SPAN = 31 * 86_400  # seconds of readings one request may ask for
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # PostgreSQL refuses NUL in text: bad input, not a 503
_T = TypeVar("_T")
log = logging.getLogger(__name__)

BillId = Annotated[str, Path(max_length=128, pattern=_PRINTABLE, description="CUSTOMER/START-END")]
Name = Annotated[str, Path(max_length=64, pattern=_PRINTABLE, description="customer or meter id")]
Size = Annotated[int, Path(ge=1, le=MAX_INT, description="a size the bill log has had")]


def _route(request: Request) -> str:
    # The route's template (/v1/bills/{bill_id:path}): the object id is logged on its own.
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


_Responses = dict[int | str, dict[str, Any]]
_F = TypeVar("_F", bound=Callable[..., Any])
_NOT_FOUND: _Responses = {404: {"model": Detail, "description": "Unknown id (see `detail`)."}}
_CONFLICT: _Responses = {409: {"model": Detail, "description": "Reading changed since billing."}}
# Customers' data: a customer's own (the handler checks whose), or any for an auditor.
CUSTOMER_DATA = AnyRole((Role.CUSTOMER.value, Role.AUDITOR.value))
AUDIT_DATA = HasRole(Role.AUDITOR.value)
_ROUTES: list[tuple[str, str, type[BaseModel], tuple[str, ...], _Responses, Rule]] = []


def _get(
    path: str,
    model: type[BaseModel],
    raw: tuple[str, ...] = (),
    errors: _Responses = _NOT_FOUND,
    *,
    rule: Rule,
) -> Callable[[_F], _F]:
    # Routes are registered in definition order: Starlette takes the first route that matches.
    def mark(handler: _F) -> _F:
        _ROUTES.append((path, handler.__name__, model, raw, errors, rule))
        return handler

    return mark


class _Routes:
    """The handlers over one `BillArchive`; sync, so FastAPI runs their queries in threads."""

    def __init__(self, bills: BillArchive, counts: Counter[str], reads: AccessRecorder) -> None:
        self.bills = bills
        self.counts = counts
        self.reads = reads
        self._tree = MerkleTree()

    def _own(self, request: Request, customer_id: str | None, object_id: str, missing: str) -> None:
        # Whose data it is comes from the store, never from the URL. An auditor reads any;
        # a customer only their own, and another's looks like nothing at all.
        identity = identity_of(request)
        if customer_id is None or not (
            Role.AUDITOR.value in identity.roles or identity.customer_id == customer_id
        ):
            raise self._missing(missing)
        self.reads.read(identity, _route(request), customer_id, object_id)

    def _owned_bill(self, request: Request, bill_id: str) -> StoredBill:
        stored = self.bills.bill(bill_id)
        self._own(request, stored.customer_id if stored else None, bill_id, f"no bill {bill_id!r}")
        assert stored is not None
        return stored

    def _missing(self, detail: str) -> HTTPException:
        self.counts["not_found"] += 1
        return HTTPException(404, detail)

    def _found(self, value: _T | None, detail: str) -> _T:
        if value is None:
            raise self._missing(detail)
        return value

    def _log(self) -> MerkleTree:
        latest, tree = self.bills.log_head(), self._tree
        # Checked against the signed root too: a log rewritten in place is not served from memory.
        if latest is None or (latest.head.size, latest.head.root) != (tree.size, tree.root):
            # Rebuilt whole, never appended to: other threads may be proving from the old one.
            tree = self._tree = MerkleTree(self.bills.log_leaves())
        return tree

    def _head(self, size: int | None = None) -> SignedTreeHead:
        detail = (
            "the bill log is empty" if size is None else f"the bill log has no head of size {size}"
        )
        return self._found(self.bills.log_head(size), detail)

    @_get("/v1/customers/{customer_id}/bills", CustomerBills, rule=CUSTOMER_DATA)
    def customer_bills(self, request: Request, customer_id: Name) -> CustomerBills:
        """A customer's bills, oldest first, with each one's latest audit verdict."""
        missing = f"no customer {customer_id!r}"
        if identity_of(request).customer_id not in (None, customer_id):
            raise self._missing(missing)  # before any query: nothing to time either
        listed = self.bills.bill_summaries(customer_id)
        known = bool(listed) or bool(self.bills.customer_meters(customer_id))
        self._own(request, customer_id if known else None, customer_id, missing)
        entries = [BillEntry(**b._asdict()) for b in listed]
        self.counts["bill_lists"] += 1
        return CustomerBills(customer_id=customer_id, bills=entries)

    @_get("/v1/customers/{customer_id}/readings", CustomerReadings, rule=CUSTOMER_DATA)
    def customer_readings(
        self,
        request: Request,
        customer_id: Name,
        start: Annotated[int, Query(ge=0, le=MAX_INT)],
        end: Annotated[int, Query(ge=1, le=MAX_INT)],
    ) -> CustomerReadings:
        """A customer's stored readings with timestamps in [start, end), at most 31 days."""
        if not 0 < end - start <= MAX_READING_SPAN:
            raise HTTPException(422, f"end must be after start, by at most {MAX_READING_SPAN} s")
        missing = f"no customer {customer_id!r}"
        if identity_of(request).customer_id not in (None, customer_id):
            raise self._missing(missing)
        meters = self.bills.customer_meters(customer_id)
        self._own(request, customer_id if meters else None, f"{start}-{end}", missing)
        found = self.bills.packets(meters, start, end)
        readings = [ReadingView(**p._asdict()) for p in found]
        return CustomerReadings(customer_id=customer_id, start=start, end=end, readings=readings)

    # Before /v1/bills/{bill_id:path}, which would match this path too.
    @_get(
        "/v1/bills/{bill_id:path}/readings/{meter_id}/{counter}/proof",
        ProofView,
        CBOR_TYPES,
        _NOT_FOUND | _CONFLICT,
        rule=CUSTOMER_DATA,
    )
    def reading_proof(
        self,
        request: Request,
        bill_id: BillId,
        meter_id: Name,
        counter: Annotated[int, Path(ge=0, le=MAX_INT)],
    ) -> Response:
        """Proof that a reading is on a bill: a `ReadingProof`, the file itself on request."""
        self._owned_bill(request, bill_id)
        try:
            proof = self.bills.reading_proof(bill_id, meter_id, counter)
        except ProofNotFound as exc:
            raise self._missing(str(exc)) from None
        except ProofConflict as exc:
            # Tamper evidence, not a bad request: a proof from these bytes could never verify.
            self.counts["conflicts"] += 1
            raise HTTPException(409, str(exc)) from None
        except StorageError:
            raise  # the store is down: 503 from the app's handler
        except MetersealError as exc:
            # Undecodable bytes in the store are the server's fault, not the caller's.
            raise HTTPException(500, f"the store holds malformed billing data: {exc}") from None
        data = proof.to_cbor()
        self.counts["proofs"] += 1
        view = ProofView(**dataclasses.asdict(proof), proof=data)
        return negotiated(request, data, CBOR_TYPES, view)

    @_get("/v1/bills/{bill_id:path}", BillView, COSE_TYPES, rule=CUSTOMER_DATA)
    def bill(self, request: Request, bill_id: BillId) -> Response:
        """A signed bill, countersigned once audited clean; the COSE_Sign1 on request."""
        stored = self._owned_bill(request, bill_id)
        reports = self.bills.reports(bill_id)
        countersigned = countersigned_of(reports)
        served = countersigned or bytes(stored.signed_bill)
        try:
            summary: Bill | None = parse_signed_bill(served)[0]
        except MetersealError:
            summary = None
        view = BillView(
            **stored._asdict(),
            countersigned=countersigned is not None,
            latest_audit=ReportView(**reports[0]._asdict()) if reports else None,
            summary=summary,
            countersigned_bill=countersigned,
        )
        self.counts["bills"] += 1
        return negotiated(request, served, COSE_TYPES, view)

    @_get("/v1/bill-log/head", TreeHeadView, COSE_TYPES, rule=PUBLIC)
    def latest_head(self, request: Request) -> Response:
        """The bill log's latest signed tree head; the COSE_Sign1 on request."""
        return head_response(request, self._head())

    @_get("/v1/bill-log/heads/{size}", TreeHeadView, COSE_TYPES, rule=PUBLIC)
    def head(self, request: Request, size: Size) -> Response:
        """The bill log's signed tree head at a size; the COSE_Sign1 on request."""
        return head_response(request, self._head(size))

    @_get("/v1/bill-log/consistency", ConsistencyView, rule=PUBLIC)
    def consistency(
        self,
        first: Annotated[int, Query(ge=1, le=MAX_INT)],
        second: Annotated[int, Query(ge=1, le=MAX_INT)],
    ) -> ConsistencyView:
        """Consistency proof between two sizes of the bill log."""
        if first > second:
            raise HTTPException(422, f"first ({first}) must not exceed second ({second})")
        tree = self._log()
        if second > tree.size:
            raise self._missing(f"the bill log has {tree.size} entries, not {second}")
        proof = tree.consistency_proof(first, second)
        return ConsistencyView(first=first, second=second, proof=proof)

    @_get("/v1/bill-log/inclusion/{bill_id:path}", InclusionView, rule=CUSTOMER_DATA)
    def inclusion(
        self,
        request: Request,
        bill_id: BillId,
        tree_size: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    ) -> InclusionView:
        """Inclusion proof of a bill in the log (latest size or `tree_size`), with that head."""
        stored = self._owned_bill(request, bill_id)
        tree = self._log()
        size = tree.size if tree_size is None else tree_size
        if size > tree.size:
            raise self._missing(f"the bill log has {tree.size} entries, not {size}")
        if stored.log_index >= size:
            raise HTTPException(422, f"{bill_id} is entry {stored.log_index}: ask a larger size")
        return InclusionView(
            bill_id=bill_id,
            log_index=stored.log_index,
            tree_size=size,
            proof=tree.inclusion_proof(stored.log_index, size),
            signed_head=self._head(size).signed,
        )

    @_get("/v1/audit/reports", ReportList, errors={}, rule=AUDIT_DATA)
    def reports(
        self,
        request: Request,
        bill: Annotated[str | None, Query(max_length=128, pattern=_PRINTABLE)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> ReportList:
        """The auditor's reports, newest first, optionally of one bill."""
        found = self.bills.reports(bill, limit)
        self._reports_read(request, found)
        return ReportList(reports=[ReportView(**r._asdict()) for r in found])

    @_get("/v1/audit/reports/{report_id}", ReportView, rule=AUDIT_DATA)
    def report(
        self, request: Request, report_id: Annotated[int, Path(ge=1, le=MAX_INT)]
    ) -> ReportView:
        """One audit report as the auditor stored it."""
        found = self._found(self.bills.report(report_id), f"no audit report {report_id}")
        self._reports_read(request, [found])
        return ReportView(**found._asdict())

    def _reports_read(self, request: Request, reports: Sequence[StoredReport]) -> None:
        # A report is about one bill, so one customer: the access log names them all.
        identity, route = identity_of(request), _route(request)
        for bill_id in dict.fromkeys(r.bill_id for r in reports):
            stored = self.bills.bill(bill_id)
            if stored is not None:
                self.reads.read(identity, route, stored.customer_id, bill_id)


def add_billing_routes(app: FastAPI, bills: BillArchive, reads: AccessRecorder) -> None:
    """Add the billing API to a `service_app` app; it counts into `app.state.counts`."""
    routes = _Routes(bills, app.state.counts, reads)

    answer_store_unavailable(app, routes.counts, log)
    for path, name, model, raw, errors, rule in _ROUTES:
        handler = getattr(routes, name)
        binary = {"schema": {"type": "string", "format": "binary"}}
        content: _Responses = {200: {"content": {media: binary for media in raw}}} if raw else {}
        app.get(
            path,
            summary=handler.__doc__.splitlines()[0].rstrip("."),
            response_model=model,
            responses={**content, **errors},
            dependencies=[access(rule)],
        )(handler)


def create_billing_app(
    bills: BillArchive,
    authenticator: AccountAuthenticator | None = None,
    access_log: AccessLog | None = None,
) -> FastAPI:
    """The billing API on the runtime's app factory; without an authenticator, anonymous."""
    counts: Counter[str] = Counter()
    app = service_app(
        "meterseal bills",
        "Customers' signed bills and reading proofs, the bill log, the auditor's reports. "
        "Read-only. Sign in at /v1/auth/token; send `Authorization: Bearer TOKEN`.",
        counts,
        lambda: {"api": dict(counts)},
    )
    if authenticator is not None:
        add_account_routes(app, authenticator, access_log)
    add_billing_routes(app, bills, AccessRecorder(access_log))
    return app
