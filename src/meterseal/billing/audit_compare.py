"""The audit's comparisons: the manifest against the verified rows, the bill against its redo."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from meterseal.billing.audit_findings import Finding, FindingKind, field_finding
from meterseal.billing.bill import Bill, ManifestEntry
from meterseal.billing.completeness import estimation_rule
from meterseal.billing.compute import BillPacket, BillRequest, compute_bill, leaf_hashes
from meterseal.billing.tariff import Tariff, TariffBook, TariffError
from meterseal.errors import MetersealError


def compare_manifest(
    manifest: Sequence[ManifestEntry],
    ours: Sequence[BillPacket],
    by_key: Mapping[tuple[str, int], BillPacket],
    bad: Mapping[tuple[str, int], FindingKind],
    leaves: list[bytes],
) -> list[Finding]:
    """Each billed packet the store no longer backs, each valid one unbilled, and order."""
    if [e.leaf_hash for e in manifest] == leaves and len(set(leaves)) == len(leaves):
        return []  # every packet billed once, in our order: nothing below could differ
    findings: list[Finding] = []
    our_leaves = dict(zip(leaves, ours, strict=True))
    billed = {e.leaf_hash for e in manifest}
    for entry in manifest:
        if entry.leaf_hash in our_leaves:
            continue
        key = (entry.meter_id, entry.counter)
        row = by_key.get(key)
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
        elif key in bad:
            findings.append(
                Finding(
                    FindingKind.EXTRA,
                    f"billed, but {bad[key].value}",
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


def tariff_of(bill: Bill, tariffs: TariffBook, findings: list[Finding]) -> Tariff | None:
    """The bill's tariff from the book, with a finding if it is unknown or changed."""
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


def compare_fields(
    bill: Bill,
    tariff: Tariff,
    ours: Sequence[BillPacket],
    meters: set[str],
    tree: tuple[Sequence[bytes], bytes],
) -> list[Finding]:
    """Each bill field that differs from the bill recomputed from the verified rows."""
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
                    field_finding(
                        f"meters[{statement.meter_id}].{name}",
                        getattr(statement, name),
                        getattr(theirs, name),
                        statement.meter_id,
                    )
                )
    if bill.charges.lines != expected.charges.lines:
        findings.append(field_finding("lines", _lines(bill), _lines(expected)))
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
            findings.append(field_finding(name, got, want))
    return findings


def _lines(bill: Bill) -> list[str]:
    return [f"{li.label}: {li.amount}" for li in bill.charges.lines]
