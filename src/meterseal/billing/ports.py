"""What billing needs from a store: the records it exchanges and one Protocol per consumer.

Billing declares these; `storage.bill_store.BillStore` implements them (storage imports
billing, never the other way round). The billing service appends bills (`BillLedger`), the
auditor reads the evidence (`AuditSource`) and keeps its reports (`ReportSink`), and the
billing API reads bills, proofs, the log and reports (`BillArchive`). A repository raises
`meterseal.errors.StorageError` when the database fails, and the errors named here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from cryptography import x509

from meterseal.billing.compute import BillPacket
from meterseal.billing.proofs import ReadingProof
from meterseal.billing.tariff import TariffBook
from meterseal.crypto.registry import MeterDirectory
from meterseal.errors import MetersealError
from meterseal.transparency.heads import SignedTreeHead
from meterseal.transparency.merkle import MerkleTree

Window = tuple[int, int]  # [start, end), Unix seconds


class BillExists(MetersealError):
    """A bill with this id is kept already (bills are never rewritten)."""


class StoredBill(NamedTuple):
    """A bill as kept: the signed bill, its manifest and where it sits in the log."""

    bill_id: str
    customer_id: str
    period_start: int
    period_end: int
    issued_at: int
    currency: str
    total: str
    signed_bill: bytes
    manifest: bytes
    log_index: int


class StoredReport(NamedTuple):
    """An audit report as kept."""

    id: int
    bill_id: str
    audited_at: int
    clean: bool
    report: dict[str, Any]
    countersigned_bill: bytes | None


class BillSummary(NamedTuple):
    """A bill as a customer's list shows it: no signed bytes or manifest, its audit verdicts."""

    bill_id: str
    period_start: int
    period_end: int
    issued_at: int
    currency: str
    total: str
    log_index: int
    audited: bool
    clean: bool | None  # the latest audit's verdict; None: never audited
    countersigned: bool  # some audit, maybe an earlier one, was clean and countersigned it
    kind: str = "bill"  # bill, credit or rebill
    standing: str = "in force"  # in force, superseded by …, credited by …, cancels …


def countersigned_of(reports: Sequence[StoredReport]) -> bytes | None:
    """The countersigned bill of the newest clean audit among `reports` (newest first)."""
    # A later unclean audit does not withdraw an earlier countersignature; it shows in reports.
    return next((bytes(r.countersigned_bill) for r in reports if r.countersigned_bill), None)


class BillLedger(Protocol):
    """The billing service's store: a period's readings, and the bill log it appends to."""

    def bill(self, bill_id: str) -> StoredBill | None:
        """One bill by id."""
        ...

    def packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' stored originals with column timestamps in [start, end)."""
        ...

    def unsigned_packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' UNSIGNED imports with timestamps in [start, end) (counter -timestamp)."""
        ...

    def log_leaves(self) -> list[bytes]:
        """Every leaf hash of the bill log, in order."""
        ...

    def log_head(self, tree_size: int | None = None) -> SignedTreeHead | None:
        """The signed tree head at `tree_size` (default: the latest), None if there is none."""
        ...

    def signed_bills(
        self,
        customer_id: str | None = None,
        period_start: int | None = None,
        period_end: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """(log index, signed bill) of the bills kept, optionally of one customer and period."""
        ...

    def bills_overlapping(
        self, start: int, end: int, customer_ids: Sequence[str] | None = None
    ) -> list[tuple[int, bytes]]:
        """(log index, signed bill) of the bills (of these customers) overlapping [start, end)."""
        ...

    def record_bills(
        self,
        entries: Sequence[tuple[StoredBill, bytes]],
        log: MerkleTree,
        sign_head: Callable[[int, bytes], bytes],
    ) -> list[int]:
        """Append (bill, leaf hash) entries to the log in one transaction (catching `log` up
        first) and keep them; their indices. BillExists if one is kept (then none is)."""
        ...


class AuditSource(Protocol):
    """What the auditor reads (read-only): bills, readings, tariffs and meter certificates."""

    def bill(self, bill_id: str) -> StoredBill | None:
        """One bill by id."""
        ...

    def customer_meters(self, customer_id: str) -> list[str]:
        """One customer's meters (revoked included)."""
        ...

    def packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' stored originals with column timestamps in [start, end)."""
        ...

    def packets_by_key(self, keys: Iterable[tuple[str, int]]) -> list[BillPacket]:
        """The stored originals with these (meter, counter) keys, wherever their timestamps."""
        ...

    def unsigned_packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' UNSIGNED imports with timestamps in [start, end) (counter -timestamp)."""
        ...

    def customer_windows(self, customer_id: str, start: int, end: int) -> dict[str, list[Window]]:
        """The customer's meters in [start, end), each with the [start, end) it was theirs."""
        ...

    def signed_bills(
        self,
        customer_id: str | None = None,
        period_start: int | None = None,
        period_end: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """(log index, signed bill) of the bills kept, optionally of one customer and period."""
        ...

    def tariff_book(self) -> TariffBook:
        """Every stored tariff, decoded as stored."""
        ...

    def meter_directory(self, ca_certificate: x509.Certificate) -> MeterDirectory:
        """The stored meters whose certificates chain to `ca_certificate` (others left out)."""
        ...


class ReportSink(Protocol):
    """Where the auditor keeps its reports."""

    def record_report(
        self, bill_id: str, audited_at: int, report: dict[str, Any], countersigned: bytes | None
    ) -> int:
        """Keep an audit report (and the countersigned bill if clean); its id."""
        ...


class BillArchive(Protocol):
    """What the billing API serves (read-only): bills, proofs, the bill log, audit reports."""

    def bill(self, bill_id: str) -> StoredBill | None:
        """One bill by id."""
        ...

    def bill_summaries(self, customer_id: str) -> list[BillSummary]:
        """A customer's bills, oldest log entry first, with their audit verdicts."""
        ...

    def customer_meters(self, customer_id: str) -> list[str]:
        """One customer's meters (revoked included); none for an unknown customer."""
        ...

    def packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' stored originals with column timestamps in [start, end)."""
        ...

    def reading_proof(self, bill_id: str, meter_id: str, counter: int) -> ReadingProof:
        """The inclusion proof of a billed reading; ProofNotFound or ProofConflict if none."""
        ...

    def log_leaves(self) -> list[bytes]:
        """Every leaf hash of the bill log, in order."""
        ...

    def log_head(self, tree_size: int | None = None) -> SignedTreeHead | None:
        """The signed tree head at `tree_size` (default: the latest)."""
        ...

    def reports(self, bill_id: str | None = None, limit: int = 1000) -> list[StoredReport]:
        """Audit reports, newest first, optionally of one bill."""
        ...

    def report(self, report_id: int) -> StoredReport | None:
        """One audit report by id."""
        ...
