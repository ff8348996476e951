"""The metrology authority's auditor: read-only store access, its own key, its own reports.

Around the sans-IO `audit_bill`: it loads what the audit needs through a read-only store
(`ports.AuditSource`), has the meter registry rebuilt from certificates checked against the CA
(the store's meter table is not trusted), countersigns a clean bill with the authority's key
and writes each report through a separate, writable store (`ports.ReportSink`; by default the
same database's report table).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from meterseal.billing.audit import AuditInput, AuditReport, Finding, FindingKind, audit_bill
from meterseal.billing.bill import (
    Bill,
    BillSignatureError,
    ManifestEntry,
    manifest_from_cbor,
    parse_signed_bill,
    verify_signed_bill,
)
from meterseal.billing.corrections import credit_problems, rebill_problems
from meterseal.billing.ports import AuditSource, ReportSink, StoredBill
from meterseal.billing.tariff import TariffBook
from meterseal.crypto.countersign import countersign
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.crypto.signing import SigningKey, VerifyingKey
from meterseal.errors import MetersealError

# Rows this far outside the period are read too: a timestamp column moved out of the
# period must not hide a reading from the audit.
MARGIN_SECONDS = 86_400


class AuditError(MetersealError):
    """A bill could not be audited at all (unknown bill id)."""


@dataclass(frozen=True)
class AuditOutcome:
    """The report, the countersigned bill when clean, the report's id and the audit's seconds."""

    report: AuditReport
    countersigned: bytes | None
    report_id: int
    seconds: float


class Auditor:
    """Audits bills with the authority's key; trusts the CA, the billing key and its tariffs."""

    def __init__(
        self,
        source: AuditSource,
        reports: ReportSink,
        key: SigningKey,
        ca_certificate: x509.Certificate,
        billing_key: VerifyingKey,
        *,
        tariffs: TariffBook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.reports = reports
        self.key = key
        self.kid = kid_of(public_bytes(key.public_key()))
        self.billing_key = billing_key
        self.registry = source.meter_directory(ca_certificate)
        # The authority should keep its own copy of the tariffs it approved; by default it
        # reads the store's, which is enough to catch a tariff changed after signing.
        self.tariffs = tariffs if tariffs is not None else source.tariff_book()
        self.clock = clock

    def audit(self, bill_id: str) -> AuditOutcome:
        """Audit one bill, record the report; countersign it when nothing is found."""
        started = time.perf_counter()
        stored = self.source.bill(bill_id)
        if stored is None:
            raise AuditError(f"no bill {bill_id!r} in the store")
        bill, _ = parse_signed_bill(stored.signed_bill)
        if bill.kind == "credit":
            report = self._credit_report(bill, stored)
        else:
            report = self._bill_report(bill, stored)
            if bill.kind == "rebill":
                report = _with(report, self._rebill_findings(bill))
        countersigned = (
            countersign(stored.signed_bill, self.key, self.kid) if report.clean else None
        )
        seconds = time.perf_counter() - started
        report_id = self.reports.record_report(
            bill_id, report.audited_at, report.to_dict(), countersigned
        )
        return AuditOutcome(report, countersigned, report_id, seconds)

    def _bill_report(self, bill: Bill, stored: StoredBill) -> AuditReport:
        """The audit of a bill's (or rebill's) readings, tariff and evidence (`audit_bill`)."""
        period = bill.period
        owned = self.source.customer_windows(bill.customer_id, period.start, period.end)
        customer_meters = list(owned)
        # Dates the store gives a meter of this customer for part of the period (one span).
        windows = {
            m: spans[0] if len(spans) == 1 else (-1, -1)
            for m, spans in owned.items()
            if spans != [(period.start, period.end)]
        }
        meter_ids = sorted({m.meter_id for m in bill.meters} | set(customer_meters))
        start, end = period.start - MARGIN_SECONDS, period.end + MARGIN_SECONDS
        rows = self.source.packets(meter_ids, start, end)
        if bill.unsigned_wh is not None:
            rows += self.source.unsigned_packets(meter_ids, start, end)
        seen = {(r.meter_id, r.counter) for r in rows}
        try:
            entries: tuple[ManifestEntry, ...] | None = manifest_from_cbor(stored.manifest)
        except MetersealError:
            entries = None  # audit_bill decodes it again and reports why it is not a manifest
        wanted = [(e.meter_id, e.counter) for e in entries or ()]
        rows += self.source.packets_by_key(k for k in wanted if k not in seen)
        return audit_bill(
            AuditInput(
                stored.signed_bill,
                stored.manifest,
                rows,
                customer_meters,
                self.registry,
                self.tariffs,
                self.billing_key,
                entries,
                windows,
            ),
            now=int(self.clock()),
        )

    def _referred(self, bill: Bill) -> tuple[Bill, bytes] | None:
        """The bill `bill` refers to and its signed bytes, if the store has it."""
        stored = self.source.bill(bill.refers[0]) if bill.refers else None
        return (
            None
            if stored is None
            else (parse_signed_bill(stored.signed_bill)[0], stored.signed_bill)
        )

    def _credit_report(self, credit: Bill, stored: StoredBill) -> AuditReport:
        """A credit: signed by billing, the exact negation of the bill it cancels, its evidence."""
        findings = []
        try:
            verify_signed_bill(stored.signed_bill, self.billing_key)
        except BillSignatureError as exc:
            findings.append(Finding(FindingKind.SIGNATURE, exc.diagnostics(), field="signature"))
        cancelled = self._referred(credit)
        for name, detail in credit_problems(credit, cancelled):
            findings.append(Finding(FindingKind.FIELD, detail, field=name))
        original = self.source.bill(credit.refers[0]) if credit.refers else None
        if original is not None and original.manifest != stored.manifest:
            findings.append(
                Finding(
                    FindingKind.ALTERED,
                    "the credit's manifest is not the cancelled bill's",
                    field="manifest",
                )
            )
        return AuditReport(
            credit.bill_id, credit.customer_id, int(self.clock()), 0, 0, tuple(findings)
        )

    def _rebill_findings(self, rebill: Bill) -> list[Finding]:
        """A rebill replaces a bill of its customer and period that a credit cancels."""
        period = rebill.period
        kept = self.source.signed_bills(rebill.customer_id, period.start, period.end)
        period_bills = [parse_signed_bill(signed)[0] for _, signed in kept]
        return [
            Finding(FindingKind.FIELD, detail, field=name)
            for name, detail in rebill_problems(rebill, self._referred(rebill), period_bills)
        ]


def _with(report: AuditReport, findings: list[Finding]) -> AuditReport:
    return dataclasses.replace(report, findings=report.findings + tuple(findings))
