"""The metrology authority's audit of one bill (sans-IO): re-derive all, name each difference.

The auditor trusts the CA (through the meter registry it is given), its own copy of the
billing service's public key and the tariff book — nothing the store says without a
signature. It re-verifies every meter signature, rebuilds the month from the signed bytes
alone, recomputes completeness, estimation, charges, chain and Merkle root, and compares them
with the bill and its manifest. No finding: the caller countersigns. Any finding: the report
names the packet (meter, counter) or the bill field, with both values.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meterseal.billing.bill import (
    Bill,
    BillFormatError,
    BillSignatureError,
    ManifestEntry,
    manifest_from_cbor,
    parse_signed_bill,
    verify_signed_bill,
)
from meterseal.billing.completeness import estimation_rule
from meterseal.billing.compute import BillPacket, BillRequest, bill_order, compute_bill, leaf_hashes
from meterseal.billing.hashing import merkle_root
from meterseal.billing.policy import flag_problem
from meterseal.billing.scope import in_scope
from meterseal.billing.tariff import Tariff, TariffBook, TariffError
from meterseal.billing.unsigned import UnsignedRecordError, unsigned_from_cbor
from meterseal.crypto.packet import verify_signed_originals
from meterseal.crypto.registry import MeterDirectory
from meterseal.crypto.signing import VerifyingKey
from meterseal.errors import InvalidPacket, MetersealError


class FindingKind(enum.StrEnum):
    """What kind of discrepancy an audit found."""

    MISSING = "missing"  # a valid reading not on the bill, or a billed packet gone from the store
    EXTRA = "extra"  # billed, but not a valid reading of this customer in this period
    ALTERED = "altered"  # stored bytes or columns differ from what was signed or billed
    REORDERED = "reordered"  # the bill's order is not (timestamp, meter, counter)
    FOREIGN = "foreign"  # signed by another meter than the row claims
    FORGED = "forged"  # the meter signature does not verify (or no such meter)
    REPLAYED = "replayed"  # a reading signed for another time or counter, stored again
    FIELD = "field"  # a bill field differs from the auditor's recomputation
    SIGNATURE = "signature"  # the billing service's signature does not hold
    TARIFF = "tariff"  # the tariff named on the bill is unknown or changed since signing


@dataclass(frozen=True, slots=True)
class Finding:
    """One discrepancy, naming the packet (meter, counter) or the bill field concerned."""

    kind: FindingKind
    detail: str
    meter_id: str | None = None
    counter: int | None = None
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (None fields dropped)."""
        out: dict[str, Any] = {"kind": self.kind.value, "detail": self.detail}
        for name in ("meter_id", "counter", "field"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


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
    findings += _compare_manifest(manifest or (), ours, seen, leaves)
    tariff = _tariff(bill, inp.tariffs, findings)
    if tariff is not None:
        findings += _compare_fields(bill, tariff, ours, meters, (leaves, root))
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
        _field(f"meters[{m.meter_id}].window", m.window, stored.get(m.meter_id), m.meter_id)
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


def _compare_manifest(
    manifest: Sequence[ManifestEntry],
    ours: Sequence[BillPacket],
    seen: _Verified,
    leaves: list[bytes],
) -> list[Finding]:
    if [e.leaf_hash for e in manifest] == leaves and len(set(leaves)) == len(leaves):
        return []  # every packet billed once, in our order: nothing below could differ
    findings: list[Finding] = []
    our_leaves = dict(zip(leaves, ours, strict=True))
    billed = {e.leaf_hash for e in manifest}
    for entry in manifest:
        if entry.leaf_hash in our_leaves:
            continue
        key = (entry.meter_id, entry.counter)
        row = seen.by_key.get(key)
        if row is None:
            findings.append(
                Finding(
                    FindingKind.MISSING,
                    "billed, but no longer in the store",
                    entry.meter_id,
                    entry.counter,
                )
            )
        elif leaf_hashes([row])[0] != entry.leaf_hash:
            findings.append(
                Finding(
                    FindingKind.ALTERED,
                    "the stored packet's bytes differ from the billed ones",
                    entry.meter_id,
                    entry.counter,
                )
            )
        elif key in seen.bad:
            findings.append(
                Finding(
                    FindingKind.EXTRA,
                    f"billed, but {seen.bad[key].value}",
                    entry.meter_id,
                    entry.counter,
                )
            )
        else:
            findings.append(
                Finding(
                    FindingKind.EXTRA,
                    "billed, but outside the period",
                    entry.meter_id,
                    entry.counter,
                )
            )
    twice = Counter(e.leaf_hash for e in manifest)
    for entry in manifest:
        if twice.pop(entry.leaf_hash, 1) > 1:
            findings.append(
                Finding(
                    FindingKind.EXTRA,
                    "the same packet is billed more than once",
                    entry.meter_id,
                    entry.counter,
                )
            )
    billed_keys = {(e.meter_id, e.counter) for e in manifest}
    for leaf, p in our_leaves.items():
        if leaf not in billed and (p.meter_id, p.counter) not in billed_keys:
            findings.append(
                Finding(
                    FindingKind.MISSING,
                    "a valid reading of the period is not on the bill",
                    p.meter_id,
                    p.counter,
                )
            )
    findings += _order_findings(manifest, our_leaves)
    return findings


def _order_findings(
    manifest: Sequence[ManifestEntry], our_leaves: dict[bytes, BillPacket]
) -> list[Finding]:
    """Name each billed packet that sits before one that should precede it."""
    billed = {e.leaf_hash for e in manifest}
    expected = [leaf for leaf in our_leaves if leaf in billed]
    actual = [e for e in manifest if e.leaf_hash in our_leaves]
    findings = []
    for want, got in zip(expected, actual, strict=False):
        if want != got.leaf_hash:
            should = our_leaves[want]
            findings.append(
                Finding(
                    FindingKind.REORDERED,
                    f"billed where counter {should.counter} of {should.meter_id} belongs",
                    got.meter_id,
                    got.counter,
                )
            )
    return findings


def _tariff(bill: Bill, tariffs: TariffBook, findings: list[Finding]) -> Tariff | None:
    try:
        tariff = tariffs.get(bill.tariff_id, bill.tariff_version)
    except (TariffError, KeyError):
        findings.append(
            Finding(
                FindingKind.TARIFF,
                f"tariff {bill.tariff_id} v{bill.tariff_version} is unknown",
                field="tariff",
            )
        )
        return None
    if tariff.digest() != bill.tariff_digest:
        findings.append(
            Finding(
                FindingKind.TARIFF,
                f"tariff {bill.tariff_id} v{bill.tariff_version} differs from the one billed "
                f"(digest {tariff.digest().hex()[:16]}…, billed {bill.tariff_digest.hex()[:16]}…)",
                field="tariff",
            )
        )
    return tariff


def _compare_fields(
    bill: Bill,
    tariff: Tariff,
    ours: Sequence[BillPacket],
    meters: set[str],
    tree: tuple[Sequence[bytes], bytes],
) -> list[Finding]:
    try:
        rule = estimation_rule(bill.estimation)
    except MetersealError as exc:
        return [Finding(FindingKind.FIELD, exc.diagnostics(), field="estimation")]
    request = BillRequest(
        bill.bill_id,
        bill.customer_id,
        tuple(m.meter_id for m in bill.meters),
        bill.period,
        tariff,
        rule,
        bill.issued_at,
        tuple((m.meter_id, *m.window) for m in bill.meters if m.window is not None),
        bill.unsigned_wh is not None,
        # The rule the bill was signed under: bills before move-in standing charges lack it.
        prorate_standing=bill.standing is not None,
    )
    expected = compute_bill(request, ours, tree=tree).bill
    findings = []
    mine = {m.meter_id: m for m in expected.meters}
    for statement in bill.meters:
        theirs = mine[statement.meter_id]
        for name in ("expected", "received", "measured_wh", "estimated_wh", "gaps", "duplicates"):
            if getattr(statement, name) != getattr(theirs, name):
                findings.append(
                    _field(
                        f"meters[{statement.meter_id}].{name}",
                        getattr(statement, name),
                        getattr(theirs, name),
                        statement.meter_id,
                    )
                )
    if bill.charges.lines != expected.charges.lines:
        findings.append(_field("lines", _lines(bill), _lines(expected)))
    for name, got, want in (
        ("total", bill.charges.total, expected.charges.total),
        ("currency", bill.charges.currency, expected.charges.currency),
        ("packets", bill.packets, expected.packets),
        ("unsigned_wh", bill.unsigned_wh, expected.unsigned_wh),
        ("standing", bill.standing, expected.standing),
        ("chain", bill.chain_head.hex(), expected.chain_head.hex()),
        ("merkle_root", bill.merkle_root.hex(), expected.merkle_root.hex()),
    ):
        if got != want:
            findings.append(_field(name, got, want))
    return findings


def _field(name: str, billed: object, audited: object, meter_id: str | None = None) -> Finding:
    detail = f"bill says {_short(billed)}, audit finds {_short(audited)}"
    return Finding(FindingKind.FIELD, detail, meter_id=meter_id, field=name)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _lines(bill: Bill) -> list[str]:
    return [f"{li.label}: {li.amount}" for li in bill.charges.lines]


def rejected_reasons(findings: Iterable[Finding]) -> Counter[str]:
    """How many findings of each kind (for the CLI summary)."""
    return Counter(f.kind.value for f in findings)
