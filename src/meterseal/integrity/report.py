"""The integrity report: how a meter's monitor tells the head-end its verdict (sans-IO).

A COSE_Sign1 by the meter's own key (the software key its certificate certifies, no TPM),
over canonical CBOR: meter id, verdict, reason, program, HV, when, and the audit log's size
and root at that moment (so the head-end can later ask for the log and check it grew from
there). The head-end verifies it against the meter's CA-checked certificate; a report signed
by anyone else, changed after signing, or older than the last one it took is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.keys import MeterKey
from meterseal.crypto.registry import MeterRecord
from meterseal.integrity.errors import ReportError
from meterseal.integrity.judgement import Verdict
from meterseal.transparency.documents import DocumentType, sign_typed

CONTENT_TYPE = "application/meterseal-integrity-report+cbor"
SIGNED_REPORT = DocumentType(CONTENT_TYPE, "meter integrity report", ReportError, ReportError)
REPORT_FORMAT = 1
_FIELDS = frozenset(
    {
        "format",
        "meter_id",
        "verdict",
        "reason",
        "program",
        "hv",
        "issued_at_ms",
        "log_size",
        "log_root",
        "signer",
    }
)


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """A monitor's verdict on the meter's software at one moment."""

    meter_id: str
    verdict: Verdict
    reason: str
    program: str
    hv: bytes | None
    issued_at_ms: int
    log_size: int
    log_root: bytes | None
    signer: str = "software key (no TPM)"

    def to_cbor(self) -> bytes:
        """Canonical CBOR payload."""
        return cose.dumps(
            {
                "format": REPORT_FORMAT,
                "meter_id": self.meter_id,
                "verdict": self.verdict.value,
                "reason": self.reason,
                "program": self.program,
                "hv": self.hv,
                "issued_at_ms": self.issued_at_ms,
                "log_size": self.log_size,
                "log_root": self.log_root,
                "signer": self.signer,
            }
        )

    @classmethod
    def from_cbor(cls, data: bytes) -> IntegrityReport:
        """Decode strictly; ReportError on anything else."""
        try:
            item = cose.loads_strict(data)
        except CoseFormatError as exc:
            raise ReportError(f"not an integrity report: {exc}") from None
        if not isinstance(item, cose.MAP_TYPES) or set(item) != _FIELDS:
            raise ReportError(f"an integrity report has exactly {sorted(_FIELDS)}")
        if item["format"] != REPORT_FORMAT:
            raise ReportError(f"report format {item['format']!r} is not {REPORT_FORMAT}")
        try:
            verdict = Verdict(item["verdict"])
        except ValueError:
            raise ReportError(f"unknown verdict {item['verdict']!r}") from None
        return cls(
            _text(item, "meter_id"),
            verdict,
            _text(item, "reason"),
            _text(item, "program"),
            _digest(item["hv"]),
            _count(item, "issued_at_ms"),
            _count(item, "log_size"),
            _digest(item["log_root"]),
            _text(item, "signer"),
        )


def _text(item: Any, name: str) -> str:
    if not isinstance(item[name], str):
        raise ReportError(f"{name} must be text")
    return str(item[name])


def _count(item: Any, name: str) -> int:
    if type(item[name]) is not int or item[name] < 0:
        raise ReportError(f"{name} must be a non-negative integer")
    return int(item[name])


def _digest(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) != 32:
        raise ReportError("digests are 32 bytes")
    return value


def sign_report(report: IntegrityReport, key: MeterKey) -> bytes:
    """The report as a COSE_Sign1 by the meter's key (its suite's signature scheme)."""
    if key.meter_id != report.meter_id:
        raise ValueError("a meter signs only its own integrity reports")
    return sign_typed(
        report.to_cbor(),
        CONTENT_TYPE,
        key.private_key,
        key.meter_id.encode(),
        key.suite.signature,
    )


def parse_report(signed: bytes) -> tuple[IntegrityReport, cose.Sign1]:
    """The report inside a COSE_Sign1, not yet verified."""
    body = SIGNED_REPORT.parse(signed)
    return IntegrityReport.from_cbor(body.payload), body


def verify_report(signed: bytes, meter: MeterRecord) -> IntegrityReport:
    """The report if `meter`'s certified key signed it for that meter; ReportError if not."""
    report, body = parse_report(signed)
    scheme = meter.suite.signature
    if report.meter_id != meter.meter_id or body.headers.get(cose.KID) != meter.meter_id.encode():
        raise ReportError(f"the report does not name meter {meter.meter_id}")
    if body.headers.get(cose.ALG) != scheme.cose_alg:
        raise ReportError(f"the report is not signed with the meter's {scheme.name}")
    try:
        scheme.verify(meter.public_key, body.signature, body.to_be_signed())
    except InvalidSignature:
        raise ReportError(f"the report's signature is not meter {meter.meter_id}'s") from None
    return report
