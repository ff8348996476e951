"""Registering meters whose keys were made at the factory (`meters certify|import-cert`, portal).

`register_certified` checks each deployment-CA certificate's chain and suite (the registry's
rules), refuses an id registered with another key unless `replace` and a revoked id always (a
revoked meter stays revoked; the store refuses it too), and stores the meters;
`write_certificates` writes DEPLOYMENT/meters/ID.cert.pem (what goes back to the factory).
`Enrolment` does the whole of one meter from a PEM CSR or a manufacturer's PEM certificate,
as the administrator's portal page does: the CLI and the page share every step.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto.manufacturer import (
    Certified,
    certify_manufacturer_certificate,
    certify_request,
)
from meterseal.crypto.registry import MeterRecord, MeterRegistry
from meterseal.crypto.suites import CipherSuite
from meterseal.errors import CertificateError
from meterseal.storage import Store
from meterseal.storage.store import refuse_revoked

METERS_DIRECTORY = "meters"  # DEPLOYMENT/meters/ID.cert.pem: what goes back to the factory
MANUFACTURERS_DIRECTORY = "manufacturers"  # DEPLOYMENT/manufacturers/NAME.cert.pem: trusted CAs
PEM_BEGIN = b"-----BEGIN "


def _public(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def register_certified(
    ca_cert: x509.Certificate,
    store: Store,
    done: Sequence[Certified],
    customer: str | None,
    region: str,
    *,
    replace: bool,
    now: dt.datetime,
) -> list[MeterRecord]:
    """Register certified meters (default customer CUST-ID); a known id with another key
    refused (unless `replace`), a revoked id always (MeterRevoked)."""
    registry = MeterRegistry(ca_cert)
    records = [
        registry.register(c.certificate, c.suite, customer or f"CUST-{c.meter_id}", region)
        for c in done
    ]
    rows = {row.meter_id: row for row in store.meter_rows()}
    revoked = {r.meter_id: rows[r.meter_id].revoked_at for r in records if r.meter_id in rows}
    if any(revoked.values()):  # --replace or not (the store refuses them too)
        raise refuse_revoked({m: at for m, at in revoked.items() if at is not None})
    for record, c in zip(records, done, strict=True):
        stored = rows.get(record.meter_id)
        if stored is None or replace:
            continue
        if _public(x509.load_der_x509_certificate(stored.certificate)) != _public(c.certificate):
            raise CertificateError(
                f"meter {record.meter_id} is registered with another key: revoke it "
                "(`meterseal meters revoke`) and register this key under a new id, or give "
                "--replace to give the id this key"
            )
    store.register_meters(records, now=now)
    return records


def write_certificates(directory: Path, done: Sequence[Certified]) -> list[Path]:
    """Write each meter's certificate to DIRECTORY/meters/ID.cert.pem; the paths."""
    from meterseal.crypto.at_rest import private_directory

    out = private_directory(directory / METERS_DIRECTORY)
    paths = []
    for c in done:
        path = out / f"{c.meter_id}.cert.pem"
        path.write_bytes(c.certificate.public_bytes(serialization.Encoding.PEM))
        paths.append(path)
    return paths


def manufacturer_cas(deployment_dir: Path) -> list[x509.Certificate]:
    """The manufacturer CAs the deployment trusts (`meters trust-manufacturer`); maybe none."""
    paths = sorted((deployment_dir / MANUFACTURERS_DIRECTORY).glob("*.cert.pem"))
    try:
        return [x509.load_pem_x509_certificate(p.read_bytes()) for p in paths]
    except (OSError, ValueError) as exc:
        raise CertificateError(f"a trusted manufacturer CA cannot be read: {exc}") from None


def _one_pem(text: bytes, what: str) -> bytes:
    if text.count(PEM_BEGIN) != 1:
        raise CertificateError(f"paste exactly one PEM {what} (-----BEGIN …-----)")
    return text.strip()


@dataclass
class Enrolment:
    """One new meter at a time, from a CSR or a manufacturer's certificate, into `store`."""

    ca_key: ec.EllipticCurvePrivateKey = field(repr=False)
    ca_cert: x509.Certificate
    store: Store
    directory: Path | None = None  # where certificates go back to the factory (None: nowhere)
    manufacturers: Sequence[x509.Certificate] = ()
    rng: Callable[[int], bytes] = os.urandom

    def certify(
        self,
        csr_pem: bytes,
        meter_id: str | None,
        customer: str,
        region: str,
        suite: CipherSuite | None,
        now: dt.datetime,
    ) -> Certified:
        """Certify a meter's PEM CSR with the deployment CA and register it."""
        try:
            request = x509.load_pem_x509_csr(_one_pem(csr_pem, "certificate request"))
        except ValueError as exc:
            raise CertificateError(f"not a PEM certificate request ({exc})") from None
        done = certify_request(
            self.ca_key, self.ca_cert, request, now=now, rng=self.rng, meter_id=meter_id,
            suite=suite,
        )  # fmt: skip
        return self._register(done, customer, region, now)

    def import_certificate(
        self,
        cert_pem: bytes,
        customer: str,
        region: str,
        suite: CipherSuite | None,
        now: dt.datetime,
    ) -> Certified:
        """Certify a trusted manufacturer's PEM meter certificate and register the meter."""
        if not self.manufacturers:
            raise CertificateError(
                "no manufacturer CA is trusted: `meterseal meters trust-manufacturer` first"
            )
        try:
            certificate = x509.load_pem_x509_certificate(_one_pem(cert_pem, "certificate"))
        except ValueError as exc:
            raise CertificateError(f"not a PEM certificate ({exc})") from None
        done = certify_manufacturer_certificate(
            self.ca_key, self.ca_cert, certificate, self.manufacturers, now=now, rng=self.rng,
            suite=suite,
        )  # fmt: skip
        return self._register(done, customer, region, now)

    def _register(self, done: Certified, customer: str, region: str, now: dt.datetime) -> Certified:
        # New meters only: registering a known id again would replace its row, and so clear a
        # revocation (the store's upsert); a revoked meter stays revoked.
        known = next((r for r in self.store.meter_rows() if r.meter_id == done.meter_id), None)
        if known is not None:
            state = (
                f"revoked on {known.revoked_at:%Y-%m-%d %H:%M} UTC"
                if known.revoked_at
                else f"for customer {known.customer_id}"
            )
            raise CertificateError(
                f"meter {done.meter_id} is registered already ({state}): only new meters are "
                "provisioned here"
            )
        register_certified(
            self.ca_cert, self.store, [done], customer or None, region, replace=False, now=now
        )
        if self.directory is not None:
            write_certificates(self.directory, [done])
        return done
