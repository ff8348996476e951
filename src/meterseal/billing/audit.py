"""The metrology authority's audit of one bill (sans-IO): re-derive all, name each difference.

The auditor trusts the CA (through the meter registry it is given), its own copy of the
billing service's public key and the tariff book — nothing the store says without a
signature. It re-verifies every meter signature, rebuilds the month from the signed bytes
alone, recomputes completeness, estimation, charges, chain and Merkle root, and compares them
with the bill and its manifest. No finding: the caller countersigns. Any finding: the report
names the packet (meter, counter) or the bill field, with both values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meterseal.billing.audit_compare import compare_fields, compare_manifest, tariff_of
from meterseal.billing.audit_findings import (
    Finding,
    FindingKind,
    field_finding,
    rejected_reasons,
)
from meterseal.billing.bill import (
    Bill,
    BillFormatError,
    BillSignatureError,
    ManifestEntry,
    manifest_from_cbor,
    parse_signed_bill,
    verify_signed_bill,
)
from meterseal.billing.compute import BillPacket, bill_order, leaf_hashes
from meterseal.billing.hashing import merkle_root
from meterseal.billing.policy import flag_problem
from meterseal.billing.scope import in_scope
from meterseal.billing.tariff import TariffBook
from meterseal.billing.unsigned import UnsignedRecordError, unsigned_from_cbor
from meterseal.crypto.packet import verify_signed_originals
from meterseal.crypto.registry import MeterDirectory
from meterseal.crypto.signing import VerifyingKey
from meterseal.errors import InvalidPacket

# Findings are the audit's vocabulary: callers import them from here as from audit_findings.
__all__ = [
    "AuditInput",
    "AuditReport",
    "Finding",
    "FindingKind",
    "audit_bill",
    "rejected_reasons",
]


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of auditing one bill: clean (countersign) or the list of findings."""

    bill_id: str
    customer_id: str
    audited_at: int
    packets_checked: int
    signatures_verified: int
    findings: tuple[Finding, ...]
    unsigned_checked: int = 0  # UNSIGNED imports checked against their columns (no signature)

    @property
    def clean(self) -> bool:
        """No discrepancy: the authority may countersign."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of the report."""
        out = self._base_dict()
        if self.unsigned_checked:
            out["unsigned_checked"] = self.unsigned_checked
        return out

    def _base_dict(self) -> dict[str, Any]:
        return {
            "bill": self.bill_id,
            "customer": self.customer_id,
            "audited_at": self.audited_at,
            "verdict": "countersigned" if self.clean else "discrepancies",
            "packets_checked": self.packets_checked,
            "signatures_verified": self.signatures_verified,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class AuditInput:
    """What the auditor reads: the signed bill, its manifest, and the store's rows around it.

    `stored` must hold the rows of the bill's customer's meters with timestamps in the period
    (and a margin around it) plus every row the manifest names, as the store has them now.
    """

    signed_bill: bytes
    manifest: bytes
    stored: Sequence[BillPacket]
    customer_meters: Sequence[str]
    registry: MeterDirectory
    tariffs: TariffBook
    billing_key: VerifyingKey
    entries: tuple[ManifestEntry, ...] | None = None  # `manifest` already decoded by the caller
    # The store's dates of the customer's meters held for part of the period only.
    windows: Mapping[str, tuple[int, int]] | None = None


@dataclass
class _Verified:
    """The auditor's own view of the stored rows, after signature checks."""

    valid: list[BillPacket] = field(default_factory=list)  # signed values, bill's period
    by_key: dict[tuple[str, int], BillPacket] = field(default_factory=dict)  # rows as stored
    bad: dict[tuple[str, int], FindingKind] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    verified: int = 0
    unsigned: int = 0


def audit_bill(inp: AuditInput, *, now: int) -> AuditReport:
    """Audit one signed bill against the store; see the module docstring."""
    findings: list[Finding] = []
    try:
        bill = verify_signed_bill(inp.signed_bill, inp.billing_key)
    except BillSignatureError as exc:
        findings.append(Finding(FindingKind.SIGNATURE, exc.diagnostics(), field="signature"))
        bill, _ = parse_signed_bill(inp.signed_bill)
    manifest = _manifest(inp, findings)
    manifest_at = len(findings)  # where a manifest/root mismatch is reported
    meters = _meter_findings(bill, inp.customer_meters, findings)
    findings += _window_findings(bill, inp.windows or {})
    seen = _verify_rows(inp, bill, meters)
    findings += seen.findings
    windows = {m.meter_id: m.window for m in bill.meters if m.window is not None}
    allow_unsigned = bill.unsigned_wh is not None
    valid = seen.valid
    if windows or allow_unsigned:
        valid = in_scope(valid, bill.period, windows, allow_unsigned=allow_unsigned)
    ours = bill_order(valid)
    # The leaf hashes and the root over the verified rows, once for every comparison below.
    leaves = leaf_hashes(ours)
    root = merkle_root(leaves)
    if manifest is not None and _manifest_disagrees(manifest, bill, leaves, root):
        findings.insert(
            manifest_at,
            Finding(
                FindingKind.ALTERED,
                "the manifest does not match the bill's Merkle root and packet count",
                field="manifest",
            ),
        )
    findings += compare_manifest(manifest or (), ours, seen.by_key, seen.bad, leaves)
    tariff = tariff_of(bill, inp.tariffs, findings)
    if tariff is not None:
        findings += compare_fields(bill, tariff, ours, meters, (leaves, root))
    if (flag := flag_problem(bill)) is not None:  # a claim of the bill's own statements
        findings.append(Finding(FindingKind.FIELD, flag, field="estimated_over_limit"))
    return AuditReport(
        bill.bill_id,
        bill.customer_id,
        now,
        len(inp.stored),
        seen.verified,
        tuple(findings),
        seen.unsigned,
    )


def _manifest(inp: AuditInput, findings: list[Finding]) -> tuple[ManifestEntry, ...] | None:
    """The manifest's entries (decoded by the caller or here); None if it is not one."""
    if inp.entries is not None:
        return inp.entries
    try:
        return manifest_from_cbor(inp.manifest)
    except BillFormatError as exc:
        findings.append(Finding(FindingKind.ALTERED, exc.diagnostics(), field="manifest"))
        return None


def _manifest_disagrees(
    manifest: Sequence[ManifestEntry], bill: Bill, leaves: list[bytes], root: bytes
) -> bool:
    """Whether the manifest's size or Merkle root differs from the bill's."""
    if len(manifest) != bill.packets:
        return True
    billed = [e.leaf_hash for e in manifest]
    return (root if billed == leaves else merkle_root(billed)) != bill.merkle_root


def _meter_findings(bill: Bill, customer_meters: Sequence[str], out: list[Finding]) -> set[str]:
    billed = {m.meter_id for m in bill.meters}
    for meter_id in sorted(set(customer_meters) - billed):
        out.append(
            Finding(
                FindingKind.MISSING,
                "a meter of this customer is not on the bill",
                meter_id=meter_id,
                field="meters",
            )
        )
    for meter_id in sorted(billed - set(customer_meters)):
        out.append(
            Finding(
                FindingKind.EXTRA,
                "the bill names a meter this customer does not have",
                meter_id=meter_id,
                field="meters",
            )
        )
    return billed | set(customer_meters)


def _window_findings(bill: Bill, stored: Mapping[str, tuple[int, int]]) -> list[Finding]:
    """A billed meter whose dates with the customer differ from the store's assignments."""
    return [
        field_finding(f"meters[{m.meter_id}].window", m.window, stored.get(m.meter_id), m.meter_id)
        for m in bill.meters
        if m.window != stored.get(m.meter_id)
    ]


def _unsigned_rows(
    rows: Sequence[BillPacket], bill: Bill, meters: set[str], seen: _Verified
) -> None:
    """UNSIGNED imports: no signature to check, but the record must match its columns."""
    for row in rows:
        seen.by_key[(row.meter_id, row.counter)] = row
        if bill.unsigned_wh is None:
            _bad(seen, row, FindingKind.FORGED, "an UNSIGNED import on a bill allowing none")
            continue
        try:
            record = unsigned_from_cbor(row.signed_original)
        except UnsignedRecordError as exc:
            _bad(seen, row, FindingKind.ALTERED, exc.diagnostics())
            continue
        columns = (row.meter_id, row.counter, row.timestamp, row.energy_wh)
        if (record.meter_id, record.counter, record.timestamp, record.energy_wh) != columns:
            _bad(
                seen,
                row,
                FindingKind.ALTERED,
                f"the stored columns differ from its record {record}",
            )
            continue
        seen.unsigned += 1
        if row.meter_id in meters and bill.period.slot_of(row.timestamp) is not None:
            seen.valid.append(row)


def _verify_rows(inp: AuditInput, bill: Bill, meters: set[str]) -> _Verified:
    seen = _Verified()
    once: set[tuple[str, int]] = set()
    again: Counter[tuple[str, int]] = Counter()
    period = bill.period
    stored = inp.stored
    if any(row.counter < 0 for row in stored):  # UNSIGNED imports' keys
        _unsigned_rows([r for r in stored if r.counter < 0], bill, meters, seen)
        stored = [r for r in stored if r.counter >= 0]
    # Every signature in one tight loop first (the verification code stays hot), then the rows.
    outcomes = verify_signed_originals([row.signed_original for row in stored], inp.registry)
    for row, outcome in zip(stored, outcomes, strict=True):
        key = (row.meter_id, row.counter)
        seen.by_key[key] = row
        if isinstance(outcome, InvalidPacket):
            _bad(seen, row, FindingKind.FORGED, f"meter signature refused ({outcome.reason.value})")
            continue
        reading = outcome.reading
        seen.verified += 1
        signed_key = (reading.meter_id, reading.counter)
        if signed_key in once:
            again[signed_key] += 1
        else:
            once.add(signed_key)
        if reading.meter_id != row.meter_id:
            _bad(seen, row, FindingKind.FOREIGN, f"signed by meter {reading.meter_id}")
            continue
        if (
            reading.counter == row.counter
            and reading.timestamp == row.timestamp
            and reading.energy_wh == row.energy_wh
        ):
            signed = row  # the columns are the signed values (the usual case): no copy
        else:
            signed = BillPacket(
                reading.meter_id,
                reading.counter,
                reading.timestamp,
                reading.energy_wh,
                row.signed_original,
            )
        if row.meter_id in meters and period.slot_of(reading.timestamp) is not None:
            seen.valid.append(signed)
        elif row.meter_id in meters and period.slot_of(row.timestamp) is not None:
            _bad(
                seen,
                row,
                FindingKind.REPLAYED,
                f"signed for time {reading.timestamp}, outside the period, "
                f"stored as {row.timestamp}",
            )
            continue
        if signed is not row:
            _column_findings(row, signed, seen)
    for (meter_id, counter), n in sorted(again.items()):
        seen.findings.append(
            Finding(
                FindingKind.REPLAYED,
                f"{n + 1} stored rows carry this one signed reading",
                meter_id,
                counter,
            )
        )
    return seen


def _bad(seen: _Verified, row: BillPacket, kind: FindingKind, detail: str) -> None:
    seen.bad[(row.meter_id, row.counter)] = kind
    seen.findings.append(Finding(kind, detail, row.meter_id, row.counter))


def _column_findings(row: BillPacket, signed: BillPacket, seen: _Verified) -> None:
    if signed.counter != row.counter:
        seen.bad[(row.meter_id, row.counter)] = FindingKind.REPLAYED
        seen.findings.append(
            Finding(
                FindingKind.REPLAYED,
                f"signed as counter {signed.counter}, stored as counter {row.counter}",
                row.meter_id,
                row.counter,
            )
        )
        return
    for name in ("timestamp", "energy_wh"):
        stored, real = getattr(row, name), getattr(signed, name)
        if stored != real:
            seen.findings.append(
                Finding(
                    FindingKind.ALTERED,
                    f"stored {name} {stored}, signed {real}",
                    row.meter_id,
                    row.counter,
                    name,
                )
            )
