"""What the billing API answers: its JSON views and the choice between them and raw bytes.

JSON by default: hashes hex, other bytes (COSE, certificates, proof files) base64. Signed
objects come as raw bytes when Accept prefers one of the raw types to JSON (`raw_media`).
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, PlainSerializer, create_model

from meterseal.billing.bill import Bill
from meterseal.billing.ports import BillSummary
from meterseal.transparency.heads import SignedTreeHead

COSE_TYPES = ("application/cbor", "application/cose")
CBOR_TYPES = ("application/cbor",)
_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


Hex = Annotated[bytes, PlainSerializer(bytes.hex, return_type=str)]
B64 = Annotated[bytes, PlainSerializer(_b64, return_type=str)]


class Detail(BaseModel):
    """An error: what is unknown, or what is wrong with the request."""

    detail: str


def response_of(row: type[tuple[Any, ...]], name: str, doc: str) -> type[BaseModel]:
    """A response model `name` with the fields of `row`, a port's NamedTuple, each required."""
    # Required whatever defaults the row's constructor has: an answer names every field.
    hints = get_type_hints(row)
    fields: dict[str, Any] = {field: (hints[field], ...) for field in row.__annotations__}
    return create_model(name, __doc__=doc, __module__=__name__, **fields)


if TYPE_CHECKING:  # a model like any other to mypy, which cannot see fields made at import
    BillEntry = BaseModel
else:
    BillEntry = response_of(
        BillSummary,
        "BillEntry",
        "One bill in a customer's list; `clean` is the latest audit's verdict (None: unaudited).",
    )


class CustomerBills(BaseModel):
    """A customer's bills, oldest log entry first."""

    customer_id: str
    bills: list[BillEntry]


class ReadingView(BaseModel):
    """One stored reading: its columns and the meter's signed original (COSE, base64)."""

    meter_id: str
    counter: int
    timestamp: int
    energy_wh: int
    signed_original: B64


class CustomerReadings(BaseModel):
    """A customer's readings in [start, end), by meter then time."""

    customer_id: str
    start: int
    end: int
    readings: list[ReadingView]


class ReportView(BaseModel):
    """An audit report as the auditor stored it (a clean one countersigned the bill)."""

    id: int
    bill_id: str
    audited_at: int
    clean: bool
    report: dict[str, Any]


class BillView(BaseModel):
    """A bill: countersigned if a clean audit exists, its decoded payload and audit state."""

    model_config = ConfigDict(ser_json_bytes="hex")  # the bill's hashes and digests
    bill_id: str
    customer_id: str
    log_index: int
    countersigned: bool
    latest_audit: ReportView | None
    summary: Bill | None  # decoded from the served bytes, unverified; None if undecodable
    signed_bill: B64  # billing-signed: the bytes the log leaf hashes
    countersigned_bill: B64 | None  # what application/cbor returns when present


class TreeHeadView(BaseModel):
    """A signed tree head of the bill log; trust only what `signed_head` says."""

    tree_size: int
    root: Hex
    issued_at: int
    signed_head: B64


class ConsistencyView(BaseModel):
    """RFC 9162 consistency proof (bottom-up) between two sizes of the bill log."""

    first: int
    second: int
    proof: list[Hex]


class InclusionView(BaseModel):
    """RFC 9162 inclusion proof of a bill's log leaf, with the signed head it leads to."""

    bill_id: str
    log_index: int
    tree_size: int
    proof: list[Hex]
    signed_head: B64


class ProofView(BaseModel):
    """A `ReadingProof`'s fields, and the proof file itself (`proof`)."""

    bill_id: str
    signed_original: B64
    meter_certificate: B64  # DER
    suite: str
    index: int
    tree_size: int
    path: list[Hex]
    proof: B64


class ReportList(BaseModel):
    """Audit reports, newest first."""

    reports: list[ReportView]


def raw_media(accept: str, raw_types: tuple[str, ...]) -> str | None:
    """The raw type `accept` prefers to JSON, or None for JSON (also on ties and no Accept)."""
    q: dict[str, float] = {}
    for item in accept.lower().split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = next(
            (v.strip() for n, _, v in (p.partition("=") for p in params) if n == "q"), "1"
        )
        if media:  # a malformed q-value counts as q=0
            q[media] = max(q.get(media, 0.0), float(quality) if _QVALUE.fullmatch(quality) else 0.0)
    json_q = next((q[m] for m in ("application/json", "application/*", "*/*") if m in q), 0.0)
    json_q = json_q if q else 1.0
    best = max(raw_types, key=lambda m: q.get(m, 0.0))  # wildcards never select raw bytes
    return best if q.get(best, 0.0) > json_q else None


def negotiated(request: Request, raw: bytes, types: tuple[str, ...], view: BaseModel) -> Response:
    """The raw bytes if the request's Accept prefers one of `types` to JSON, else the view."""
    headers = {"Vary": "Accept"}
    media = raw_media(request.headers.get("accept", ""), types)
    if media is not None:
        return Response(raw, media_type=media, headers=headers)
    return JSONResponse(view.model_dump(mode="json"), headers=headers)


def head_response(request: Request, signed: SignedTreeHead) -> Response:
    """A signed tree head: its view, or its COSE_Sign1 on request."""
    head = signed.head
    view = TreeHeadView(
        tree_size=head.size, root=head.root, issued_at=head.issued_at, signed_head=signed.signed
    )
    return negotiated(request, signed.signed, COSE_TYPES, view)
