"""The head-end's side: signed integrity reports in, each meter's latest verdict kept.

`submit` trusts nothing in the report until the meter's certificate (re-checked against the
deployment CA, as `StoreRegistry` does) verifies its signature; the report must also be newer
than the last one taken for that meter (no replay of an old "trusted" to lift a hold) and not
from the future. The head-end's registry reads the malicious verdicts on its next refresh and
the trusted stages then quarantine that meter's readings as `meter_integrity`, until a newer
trusted report (the monitor re-verified the meter's software) replaces the verdict.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography import x509

from meterseal.crypto.registry import MeterRecord, MeterRegistry
from meterseal.crypto.suites import suite_named
from meterseal.errors import CertificateError
from meterseal.integrity.errors import ReportError
from meterseal.integrity.report import IntegrityReport, parse_report, verify_report
from meterseal.storage.schema import meter_integrity, meters
from meterseal.storage.store import Store

MAX_CLOCK_SKEW_MS = 300_000


@dataclass(frozen=True, slots=True)
class IntegrityState:
    """A meter's latest verdict as the head-end holds it."""

    meter_id: str
    verdict: str
    reason: str
    issued_at_ms: int
    received_at: dt.datetime


class IntegrityStates:
    """The meter_integrity table of a store, written only through verified reports."""

    def __init__(self, store: Store, ca_certificate: x509.Certificate) -> None:
        self.store, self.ca_certificate = store, ca_certificate

    def _meter(self, meter_id: str) -> MeterRecord:
        m = meters
        query = sa.select(m.c.certificate, m.c.suite, m.c.revoked_at).where(
            m.c.meter_id == meter_id
        )
        with self.store.connection() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise ReportError(f"meter {meter_id} is not registered")
        certificate, suite, revoked_at = row
        if revoked_at is not None:
            raise ReportError(f"meter {meter_id} is revoked")
        try:
            record = MeterRegistry(self.ca_certificate).register(
                x509.load_der_x509_certificate(certificate), suite_named(suite), "", ""
            )
        except (CertificateError, KeyError, ValueError) as exc:
            raise ReportError(
                f"meter {meter_id}'s stored certificate is not valid: {exc}"
            ) from None
        if record.meter_id != meter_id:
            raise ReportError(f"meter {meter_id}'s stored certificate names {record.meter_id}")
        return record

    def submit(self, signed: bytes, *, now: dt.datetime) -> IntegrityReport:
        """Verify a signed report and record its verdict; ReportError (nothing kept) if not."""
        claimed, _ = parse_report(signed)
        report = verify_report(signed, self._meter(claimed.meter_id))
        now_ms = int(now.timestamp() * 1000)
        if report.issued_at_ms > now_ms + MAX_CLOCK_SKEW_MS:
            raise ReportError("the report is dated in the future")
        mi = meter_integrity
        row = {
            "meter_id": report.meter_id,
            "verdict": report.verdict.value,
            "reason": report.reason,
            "issued_at_ms": report.issued_at_ms,
            "received_at": now,
            "report": signed,
        }
        with self.store.transaction() as connection:
            last = connection.scalar(
                sa.select(mi.c.issued_at_ms).where(mi.c.meter_id == report.meter_id)
            )
            if last is not None and report.issued_at_ms <= last:
                raise ReportError(
                    f"the report is not newer than the last one taken for {report.meter_id}"
                )
            if last is None:
                connection.execute(mi.insert().values(row))
            else:
                connection.execute(mi.update().where(mi.c.meter_id == report.meter_id).values(row))
        return report

    def states(self) -> list[IntegrityState]:
        """Every meter's latest verdict, by meter id."""
        return read_states(self.store)


def read_states(store: Store) -> list[IntegrityState]:
    """Every meter's latest verdict in `store`, by meter id."""
    mi = meter_integrity
    query = sa.select(
        mi.c.meter_id, mi.c.verdict, mi.c.reason, mi.c.issued_at_ms, mi.c.received_at
    ).order_by(mi.c.meter_id)
    with store.connection() as connection:
        return [IntegrityState(*row) for row in connection.execute(query)]
