"""The meter registry: meter id to certificate, customer, region and revocation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from cryptography import x509

from meterseal.crypto.certs import verify_meter_certificate
from meterseal.crypto.signing import VerifyingKey
from meterseal.crypto.suites import CipherSuite
from meterseal.errors import CertificateError


@dataclass(frozen=True, slots=True)
class MeterRecord:
    """What the head-end knows of one meter; `public_key` is parsed once, at registration."""

    meter_id: str
    suite: CipherSuite
    certificate: x509.Certificate
    public_key: VerifyingKey
    customer_id: str
    region_id: str
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    integrity_hold: str | None = None  # the monitor's reason while its meter is judged malicious

    @classmethod
    def from_certificate(
        cls,
        meter_id: str,
        suite: CipherSuite,
        certificate: x509.Certificate,
        customer_id: str,
        region_id: str,
    ) -> MeterRecord:
        """A record with the public key and validity period read out of the certificate once."""
        return cls(
            meter_id,
            suite,
            certificate,
            certificate.public_key(),  # type: ignore[arg-type]
            customer_id,
            region_id,
            certificate.not_valid_before_utc,
            certificate.not_valid_after_utc,
        )

    def valid_at(self, now: dt.datetime) -> bool:
        """Whether the meter certificate is valid at `now`."""
        return self.not_before <= now <= self.not_after

    @property
    def revoked(self) -> bool:
        """Whether the meter has been revoked (at any time)."""
        return self.revoked_at is not None


class MeterDirectory(Protocol):
    """Read side of a registry, as `open` needs it (in memory here, a database later)."""

    def get(self, meter_id: str) -> MeterRecord | None:
        """The record of `meter_id`, or None."""
        ...


class MeterRegistry:
    """An in-memory registry that admits only certificates issued by its CA."""

    def __init__(self, ca_certificate: x509.Certificate) -> None:
        self.ca_certificate = ca_certificate
        self._records: dict[str, MeterRecord] = {}

    def register(
        self, certificate: x509.Certificate, suite: CipherSuite, customer_id: str, region_id: str
    ) -> MeterRecord:
        """Verify the certificate chain and key type, then add (or replace) the meter."""
        meter_id = verify_meter_certificate(certificate, self.ca_certificate)
        record = MeterRecord.from_certificate(meter_id, suite, certificate, customer_id, region_id)
        if not suite.signature.accepts(record.public_key):
            raise CertificateError(
                f"meter {meter_id}: certificate key does not fit suite {suite.name}"
            )
        self._records[meter_id] = record
        return record

    def revoke(self, meter_id: str, *, now: dt.datetime) -> None:
        """Mark a meter revoked; its packets are refused from now on."""
        record = self._records[meter_id]
        self._records[meter_id] = replace(record, revoked_at=now)

    def hold(self, meter_id: str, reason: str | None) -> None:
        """Quarantine a meter's packets for an integrity `reason` (None lifts the hold)."""
        record = self._records[meter_id]
        self._records[meter_id] = replace(record, integrity_hold=reason)

    def get(self, meter_id: str) -> MeterRecord | None:
        """The record of `meter_id`, or None."""
        return self._records.get(meter_id)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[MeterRecord]:
        return iter(self._records.values())
