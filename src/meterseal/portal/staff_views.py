"""What the staff's pages show, computed from what the store returns (no I/O here).

The auditor's: audit reports with each finding named by its kind, each bill's countersign
standing, and the bill log's signed heads checked against each other and the log's leaves.
The operator's: fleet health from meters, ingest counters and the quarantine, and the regional
load drawn as inline SVG bar charts computed here (no chart script: the strict CSP holds).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meterseal.accounts.model import Role
from meterseal.billing.audit import FindingKind
from meterseal.billing.billlog import BILL_LOG_HEAD
from meterseal.billing.ports import StoredReport
from meterseal.crypto.signing import VerifyingKey
from meterseal.errors import MetersealError
from meterseal.transparency.heads import SignedTreeHead
from meterseal.transparency.merkle import MerkleTree, ProofError, verify_consistency

# Where each role lands after signing in; an account with several roles lands on the first.
HOMES = {
    Role.CUSTOMER: "/portal/bills",
    Role.AUDITOR: "/portal/audit",
    Role.OPERATOR: "/portal/fleet",
    Role.ADMINISTRATOR: "/portal/admin/meters",
}
# The kinds an audit names, in the order the pages list them.
KINDS = tuple(FindingKind)


def home_of(roles: Iterable[str]) -> str:
    """The page an account with `roles` lands on."""
    held = set(roles)
    return next((home for role, home in HOMES.items() if role.value in held), "/portal/login")


@dataclass(frozen=True)
class FindingRow:
    """One discrepancy of a report: its kind, what it concerns, and the report's words."""

    kind: str
    where: str  # meter and counter, or the bill field, or "" for the bill as a whole
    detail: str


@dataclass(frozen=True)
class ReportRow:
    """An audit report as the auditor's pages list it."""

    id: int
    bill_id: str
    audited_at: dt.datetime
    clean: bool
    checked: int  # packets the audit checked
    counts: tuple[tuple[str, int], ...]  # (kind, findings of that kind), in KINDS order
    findings: tuple[FindingRow, ...]


def _where(finding: Mapping[str, Any]) -> str:
    if finding.get("meter_id") is not None:
        counter = finding.get("counter")
        return f"{finding['meter_id']} #{counter}" if counter is not None else finding["meter_id"]
    return f"field {finding['field']}" if finding.get("field") is not None else ""


def report_row(report: StoredReport) -> ReportRow:
    """A stored report's row: its findings named by kind, counted per kind."""
    raw = report.report.get("findings") or []
    findings = tuple(
        FindingRow(str(f.get("kind", "?")), _where(f), str(f.get("detail", "")))
        for f in raw
        if isinstance(f, Mapping)
    )
    tally = Counter(f.kind for f in findings)
    order = [k.value for k in KINDS] + sorted(set(tally) - {k.value for k in KINDS})
    return ReportRow(
        id=report.id,
        bill_id=report.bill_id,
        audited_at=dt.datetime.fromtimestamp(report.audited_at, dt.UTC),
        clean=report.clean,
        checked=int(report.report.get("packets_checked", 0)),
        counts=tuple((kind, tally[kind]) for kind in order if tally[kind]),
        findings=findings,
    )


def standing(reports: Sequence[StoredReport]) -> str:
    """A bill's countersign standing from its reports (newest first)."""
    if not reports:
        return "not audited"
    if any(r.countersigned_bill for r in reports):
        return "countersigned" if reports[0].clean else "countersigned, later audit not clean"
    return "discrepancies"


@dataclass(frozen=True)
class HeadCheck:
    """One signed head of the bill log, checked three ways."""

    size: int
    root: str  # hex
    issued_at: dt.datetime
    signature: str  # "holds", "fails: …" or "not checked (no published key)"
    matches_log: bool  # its root is the root of the log's first `size` leaves
    consistent: str  # with the latest head: "holds", "latest" or "fails: …"

    @property
    def ok(self) -> bool:
        """Every check that ran held."""
        return (
            self.matches_log
            and not self.signature.startswith("fails")
            and not self.consistent.startswith("fails")
        )


def check_heads(
    heads: Sequence[SignedTreeHead], leaves: Sequence[bytes], key: VerifyingKey | None
) -> list[HeadCheck]:
    """Each head (newest first): its signature, its root against the leaves, and consistency
    with the newest head through an RFC 9162 proof computed from the leaves and verified."""
    tree = MerkleTree(leaves)
    latest = heads[0].head if heads else None
    checks = []
    for signed in heads:
        head = signed.head
        if key is None:
            signature = "not checked (no published key)"
        else:
            try:
                said = BILL_LOG_HEAD.verified(signed.signed, key)
                signature = (
                    "holds"
                    if (said.size, said.root) == (head.size, head.root)
                    else ("fails: the signed head differs from the stored columns")
                )
            except MetersealError as exc:
                signature = f"fails: {exc}"
        matches = 0 < head.size <= tree.size and tree.root_at(head.size) == head.root
        assert latest is not None
        if head is latest:
            consistent = "latest"
        else:
            consistent = _consistency(tree, head.size, head.root, latest.size, latest.root)
        checks.append(
            HeadCheck(
                head.size,
                head.root.hex(),
                dt.datetime.fromtimestamp(head.issued_at, dt.UTC),
                signature,
                matches,
                consistent,
            )
        )
    return checks


def _consistency(tree: MerkleTree, old: int, old_root: bytes, new: int, new_root: bytes) -> str:
    if not 0 < old <= new <= tree.size:
        return f"fails: the log has {tree.size} leaves, not {max(old, new)}"
    try:
        verify_consistency(old, new, old_root, new_root, tree.consistency_proof(old, new))
    except ProofError as exc:
        return f"fails: {exc}"
    return "holds"
