"""The billing side of the store: tariffs, billing inputs, bills, the bill log, audit reports.

One `BillStore` wraps a `Store` (same engine, same transactions) and implements the
repositories billing declares (`billing.ports`: BillLedger, AuditSource, ReportSink,
BillArchive). Appending to the bill log
is serialized (SQLite's write lock, a PostgreSQL advisory lock), so log indices never skip
or repeat even with several billing processes.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from cryptography import x509

from meterseal.billing.bill import manifest_from_cbor, parse_signed_bill
from meterseal.billing.compute import BillPacket, packets_of
from meterseal.billing.ledger import ledger
from meterseal.billing.ports import (
    AuditSource,
    BillArchive,
    BillExists,
    BillLedger,
    BillSummary,
    ReportSink,
    StoredBill,
    StoredReport,
)
from meterseal.billing.proofs import ProofConflict, ProofNotFound, ReadingProof, make_reading_proof
from meterseal.billing.tariff import Tariff, TariffBook
from meterseal.errors import CertificateError, StorageError
from meterseal.storage import bill_postgres, bill_sqlite
from meterseal.storage.imports import ImportStore
from meterseal.storage.schema import (
    audit_reports,
    bill_log,
    bill_log_heads,
    bills,
    meters,
    signed_originals,
    tariffs,
)
from meterseal.storage.store import Store, StoreRegistry
from meterseal.transparency.heads import SignedTreeHead, TreeHead
from meterseal.transparency.merkle import MerkleTree, leaf_hash

_PACKET_COLUMNS = bill_postgres.PACKET_COLUMNS


class BillStore(BillLedger, AuditSource, ReportSink, BillArchive):
    """Billing's repositories over one `Store` (subclassing the ports: mypy checks each)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- tariffs ------------------------------------------------------------------------

    def add_tariff(self, tariff: Tariff, *, now: dt.datetime) -> bool:
        """Keep `tariff`; False if it was there already. StorageError if the version differs."""
        row = {
            "tariff_id": tariff.tariff_id,
            "version": tariff.version,
            "body": tariff.to_cbor(),
            "digest": tariff.digest(),
            "added_at": now,
        }
        with self.store.transaction() as connection:
            stored = connection.scalar(
                sa.select(tariffs.c.digest).where(
                    tariffs.c.tariff_id == tariff.tariff_id, tariffs.c.version == tariff.version
                )
            )
            if stored is not None:
                if stored != row["digest"]:
                    raise StorageError(
                        f"tariff {tariff.tariff_id} v{tariff.version} exists with other content; "
                        "publish a new version instead"
                    )
                return False
            connection.execute(tariffs.insert().values(**row))
            return True

    def tariff_book(self) -> TariffBook:
        """Every stored tariff, decoded as stored (an auditor compares digests with bills)."""
        book = TariffBook()
        with self.store.connection() as connection:
            for (body,) in connection.execute(sa.select(tariffs.c.body)):
                book.add(Tariff.from_cbor(body))
        return book

    # -- billing inputs -----------------------------------------------------------------

    def customers(self) -> dict[str, list[str]]:
        """Each customer's meters, from the registry (revoked meters included: they billed)."""
        out: dict[str, list[str]] = defaultdict(list)
        with self.store.connection() as connection:
            query = sa.select(meters.c.customer_id, meters.c.meter_id).order_by(meters.c.meter_id)
            for customer, meter_id in connection.execute(query):
                out[customer].append(meter_id)
        return dict(out)

    def customer_meters(self, customer_id: str) -> list[str]:
        """One customer's meters (revoked included), without reading the whole registry."""
        query = (
            sa.select(meters.c.meter_id)
            .where(meters.c.customer_id == customer_id)
            .order_by(meters.c.meter_id)
        )
        with self.store.connection() as connection:
            return list(connection.scalars(query))

    def packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' stored originals with column timestamps in [start, end)."""
        ids = list(meter_ids)
        with self.store.connection() as connection:
            on_postgres = connection.dialect.name == "postgresql"
            read = bill_postgres.packets if on_postgres else bill_sqlite.packets
            return read(connection, ids, start, end)

    def unsigned_packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' UNSIGNED imports with timestamps in [start, end) (counter -timestamp)."""
        return ImportStore(self.store).unsigned_packets(meter_ids, start, end)

    def customer_windows(
        self, customer_id: str, start: int, end: int
    ) -> dict[str, list[tuple[int, int]]]:
        """The customer's meters in [start, end), each with the [start, end) it was theirs."""
        found = ImportStore(self.store).customer_windows(customer_id, start, end)
        return {m: [(w.start, w.end) for w in spans] for m, spans in found.items()}

    def packets_by_key(self, keys: Iterable[tuple[str, int]]) -> list[BillPacket]:
        """The stored originals with these (meter, counter) keys, wherever their timestamps.

        A negative counter is an UNSIGNED import's key (minus its timestamp).
        """
        so = signed_originals
        by_meter: dict[str, list[int]] = defaultdict(list)
        unsigned = []
        for meter_id, counter in keys:
            if counter < 0:
                unsigned.append((meter_id, counter))
            else:
                by_meter[meter_id].append(counter)
        out = ImportStore(self.store).unsigned_packets_by_key(unsigned) if unsigned else []
        with self.store.connection() as connection:
            for meter_id, counters in by_meter.items():
                for i in range(0, len(counters), 1000):
                    query = sa.select(*(so.c[c] for c in _PACKET_COLUMNS)).where(
                        so.c.meter_id == meter_id, so.c.counter.in_(counters[i : i + 1000])
                    )
                    out += packets_of(connection.execute(query).all())
        return out

    def meter_certificate(self, meter_id: str) -> tuple[bytes, str] | None:
        """A meter's certificate (DER) and suite, without reading the whole registry."""
        query = sa.select(meters.c.certificate, meters.c.suite).where(meters.c.meter_id == meter_id)
        with self.store.connection() as connection:
            row = connection.execute(query).first()
        return None if row is None else (bytes(row[0]), str(row[1]))

    def meter_directory(self, ca_certificate: x509.Certificate) -> StoreRegistry:
        """The stored meters whose certificates chain to the CA (the meter table is not trusted)."""
        return StoreRegistry(self.store, ca_certificate)

    def reading_proof(self, bill_id: str, meter_id: str, counter: int) -> ReadingProof:
        """The inclusion proof of a billed reading, from the stored bill, original and meter.

        ProofNotFound if any of them is missing, ProofConflict if the stored original is not
        the billed one; BillFormatError or CertificateError if the store holds malformed bytes.
        """
        stored = self.bill(bill_id)
        if stored is None:
            raise ProofNotFound(f"no bill {bill_id!r}")
        manifest = manifest_from_cbor(stored.manifest)
        entry = next((e for e in manifest if (e.meter_id, e.counter) == (meter_id, counter)), None)
        if entry is None:
            raise ProofNotFound(f"meter {meter_id} counter {counter} is not on bill {bill_id}")
        rows = self.packets_by_key([(meter_id, counter)])
        if not rows:
            raise ProofNotFound(f"the store lost the original of {meter_id} counter {counter}")
        original = bytes(rows[0].signed_original)
        if leaf_hash(original) != entry.leaf_hash:
            raise ProofConflict(f"stored {meter_id}/{counter} is not the billed one")
        found = self.meter_certificate(meter_id)
        if found is None:
            raise ProofNotFound(f"meter {meter_id} is not registered")
        try:
            certificate = x509.load_der_x509_certificate(found[0])
        except ValueError as exc:
            raise CertificateError(f"meter {meter_id}'s stored certificate: {exc}") from None
        return make_reading_proof(
            bill_id, manifest, meter_id, counter, original, certificate, found[1]
        )

    # -- bills and the bill log ---------------------------------------------------------

    def record_bill(
        self,
        bill: StoredBill,
        leaf_hash: bytes,
        log: MerkleTree,
        sign_head: Callable[[int, bytes], bytes],
    ) -> int:
        """Append one bill to the log and keep it, atomically; its log index (`record_bills`)."""
        return self.record_bills([(bill, leaf_hash)], log, sign_head)[0]

    def record_bills(
        self,
        entries: Sequence[tuple[StoredBill, bytes]],
        log: MerkleTree,
        sign_head: Callable[[int, bytes], bytes],
    ) -> list[int]:
        """Append (bill, leaf hash) entries to the log and keep them in one transaction.

        `log` is the caller's copy of the log tree: leaves other processes appended are
        added to it under the lock, then these bills'. `sign_head(size, root)` signs each new
        tree head. If this raises, `log` may be ahead of the database: reload it
        (`MerkleTree(bill_store.log_leaves())`). A credit and its rebill go in together.
        """
        with self.store.transaction() as connection:
            on_postgres = connection.dialect.name == "postgresql"
            record = bill_postgres.record_bill if on_postgres else bill_sqlite.record_bill
            indices = []
            for bill, leaf_hash in entries:
                try:
                    indices.append(record(connection, bill[:-1], leaf_hash, log, sign_head))
                except bill_postgres.BillIdTaken:
                    raise BillExists(f"bill {bill.bill_id} exists already") from None
            return indices

    def bill(self, bill_id: str) -> StoredBill | None:
        """One bill by id."""
        with self.store.connection() as connection:
            if connection.dialect.name == "postgresql":
                row = bill_postgres.bill(connection, bill_id)  # 130 kB of manifest, binary
            else:
                row = connection.execute(sa.select(bills).where(bills.c.bill_id == bill_id)).first()
        return StoredBill(*row) if row else None

    def bills(
        self, customer_id: str | None = None, period_start: int | None = None
    ) -> list[StoredBill]:
        """Bills, optionally of one customer and/or one period start, oldest log entry first."""
        query = sa.select(bills).order_by(bills.c.log_index)
        if customer_id is not None:
            query = query.where(bills.c.customer_id == customer_id)
        if period_start is not None:
            query = query.where(bills.c.period_start == period_start)
        with self.store.connection() as connection:
            return [StoredBill(*row) for row in connection.execute(query)]

    def signed_bills(
        self,
        customer_id: str | None = None,
        period_start: int | None = None,
        period_end: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """(log index, signed bill) of the bills kept, optionally of one customer and period.

        Without their manifests (~130 kB each): what lists and the corrections' checks need.
        """
        query = sa.select(bills.c.log_index, bills.c.signed_bill).order_by(bills.c.log_index)
        if customer_id is not None:
            query = query.where(bills.c.customer_id == customer_id)
        if period_start is not None:
            query = query.where(bills.c.period_start == period_start)
        if period_end is not None:
            query = query.where(bills.c.period_end == period_end)
        with self.store.connection() as connection:
            return [(int(i), bytes(signed)) for i, signed in connection.execute(query)]

    def bills_overlapping(
        self, start: int, end: int, customer_ids: Sequence[str] | None = None
    ) -> list[tuple[int, bytes]]:
        """(log index, signed bill) of the bills (of these customers) overlapping [start, end).

        One query for a whole billing run (not a lookup per bill), without the manifests.
        """
        query = (
            sa.select(bills.c.log_index, bills.c.signed_bill)
            .where(bills.c.period_start < end, bills.c.period_end > start)
            .order_by(bills.c.log_index)
        )
        if customer_ids is not None:
            query = query.where(bills.c.customer_id.in_(sorted(set(customer_ids))))
        with self.store.connection() as connection:
            return [(int(i), bytes(signed)) for i, signed in connection.execute(query)]

    def newest_bills(self, limit: int) -> list[tuple[int, bytes]]:
        """(log index, signed bill) of the newest `limit` log entries, newest first."""
        query = (
            sa.select(bills.c.log_index, bills.c.signed_bill)
            .order_by(bills.c.log_index.desc())
            .limit(limit)
        )
        with self.store.connection() as connection:
            return [(int(i), bytes(signed)) for i, signed in connection.execute(query)]

    def bill_summaries(self, customer_id: str) -> list[BillSummary]:
        """A customer's bills, oldest log entry first, with verdicts, in one query.

        Not `bills()` and `reports()` per bill: those read every bill's ~130 kB manifest and
        make a round trip per bill.
        """
        b, a = bills, audit_reports
        latest = (
            sa.select(a.c.clean)
            .where(a.c.bill_id == b.c.bill_id)
            .order_by(a.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        clean_once = sa.exists().where(a.c.bill_id == b.c.bill_id, a.c.clean)
        query = (
            sa.select(
                *(b.c[c] for c in BillSummary._fields[:7]), latest, clean_once, b.c.signed_bill
            )
            .where(b.c.customer_id == customer_id)
            .order_by(b.c.log_index)
        )
        with self.store.connection() as connection:
            rows = connection.execute(query).all()
        # Kind and standing are in the signed bills (a credit or rebill names what it corrects).
        standing = {
            e.bill.bill_id: (e.bill.kind, e.standing)
            for e in ledger((row[6], parse_signed_bill(bytes(row[9]))[0]) for row in rows)
        }
        return [
            BillSummary(
                *row[:7], row[7] is not None, _bool(row[7]), bool(row[8]), *standing[row[0]]
            )
            for row in rows
        ]

    def log_leaves(self) -> list[bytes]:
        """Every leaf hash of the bill log, in order."""
        with self.store.connection() as connection:
            query = sa.select(bill_log.c.leaf_hash).order_by(bill_log.c.log_index)
            return [bytes(leaf) for (leaf,) in connection.execute(query)]

    def log_head(self, tree_size: int | None = None) -> SignedTreeHead | None:
        """The signed tree head at `tree_size` (default: the latest)."""
        h = bill_log_heads
        query = sa.select(h.c.tree_size, h.c.root, h.c.signed_head, h.c.issued_at)
        if tree_size is None:
            query = query.order_by(h.c.tree_size.desc()).limit(1)
        else:
            query = query.where(h.c.tree_size == tree_size)
        with self.store.connection() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        size, root, signed, issued_at = row
        return SignedTreeHead(TreeHead(size, bytes(root), issued_at), bytes(signed))

    def log_heads(self, limit: int = 20) -> list[SignedTreeHead]:
        """The bill log's newest signed heads, newest first (the auditor's page checks them)."""
        h = bill_log_heads
        query = (
            sa.select(h.c.tree_size, h.c.root, h.c.signed_head, h.c.issued_at)
            .order_by(h.c.tree_size.desc())
            .limit(limit)
        )
        with self.store.connection() as connection:
            rows = connection.execute(query).all()
        return [
            SignedTreeHead(TreeHead(size, bytes(root), issued_at), bytes(signed))
            for size, root, signed, issued_at in rows
        ]

    # -- audit reports ------------------------------------------------------------------

    def report(self, report_id: int) -> StoredReport | None:
        """One audit report by id."""
        query = sa.select(audit_reports).where(audit_reports.c.id == report_id)
        with self.store.connection() as connection:
            row = connection.execute(query).first()
        return StoredReport(*row) if row else None

    def record_report(
        self, bill_id: str, audited_at: int, report: dict[str, Any], countersigned: bytes | None
    ) -> int:
        """Keep an audit report (and the countersigned bill if clean); its id."""
        with self.store.transaction() as connection:
            result = connection.execute(
                audit_reports.insert()
                .values(
                    bill_id=bill_id,
                    audited_at=audited_at,
                    clean=countersigned is not None,
                    report=report,
                    countersigned_bill=countersigned,
                )
                .returning(audit_reports.c.id)
            )
            return int(result.scalar_one())

    def reports(self, bill_id: str | None = None, limit: int = 1000) -> list[StoredReport]:
        """Audit reports, newest first, optionally of one bill."""
        a = audit_reports
        query = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        if bill_id is not None:
            query = query.where(a.c.bill_id == bill_id)
        with self.store.connection() as connection:
            return [StoredReport(*row) for row in connection.execute(query)]


def _bool(value: object) -> bool | None:
    return None if value is None else bool(value)  # SQLite answers 0 and 1
