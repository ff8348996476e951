"""meterseal's Python API: seal a reading, open it, verify a bill (README, "Python API").

A small facade over the same code the command line runs, for programs that embed meterseal:
a meter's firmware or simulator seals, a head-end opens, a customer's or an auditor's tool
verifies a bill. Keys come from what `meterseal keys init` and `meterseal meters provision`
wrote; time and randomness default to the clock and `os.urandom`. Every refusal is a
`MetersealError` (`InvalidPacket` for a packet, `ReadingProofError` for a bill or a proof).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.billing.proofs import ReadingProof, VerifiedReading, verify_reading
from meterseal.crypto import packet
from meterseal.crypto.keys import HeadEndKeys, HeadEndPublicKeys, kid_of, public_bytes
from meterseal.crypto.packet import OpenedPacket
from meterseal.crypto.registry import MeterRegistry
from meterseal.deployment import CA_CERT, Deployment
from meterseal.deployment import load_deployment as _load_deployment
from meterseal.errors import ConfigurationError, InvalidPacket, MetersealError
from meterseal.meter.provisioning import ProvisionedMeter
from meterseal.meter.provisioning import load_fleet as _load_fleet
from meterseal.model import Reading

__all__ = [
    "Deployment",
    "InvalidPacket",
    "MetersealError",
    "OpenedPacket",
    "ProvisionedMeter",
    "Reading",
    "VerifiedReading",
    "load_deployment",
    "load_fleet",
    "meter_registry",
    "open_reading",
    "seal_reading",
    "verify_bill",
]

PASSPHRASE_ENV = "MS_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret


def _passphrase(passphrase: str | None) -> bytes | None:
    value = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def load_deployment(directory: Path, passphrase: str | None = None) -> Deployment:
    """The keys `meterseal keys init DIRECTORY` wrote (passphrase: default $MS_PASSPHRASE)."""
    return _load_deployment(Path(directory), _passphrase(passphrase))


def load_fleet(path: Path, passphrase: str | None = None) -> list[ProvisionedMeter]:
    """The meters (key, certificate, customer) of a fleet file from `meterseal meters provision`."""
    return _load_fleet(Path(path), _passphrase(passphrase))


def meter_registry(
    ca_certificate: x509.Certificate, meters: Iterable[ProvisionedMeter]
) -> MeterRegistry:
    """The meters a head-end accepts: each certificate checked against the deployment's CA."""
    registry = MeterRegistry(ca_certificate)
    for meter in meters:
        registry.register(meter.certificate, meter.key.suite, meter.customer_id, meter.region_id)
    return registry


def seal_reading(
    reading: Reading,
    meter: ProvisionedMeter,
    headend: HeadEndPublicKeys,
    *,
    now: dt.datetime | None = None,
) -> bytes:
    """The meter's side: sign `reading` with the meter's key, encrypt it to the head-end (COSE)."""
    when = now or dt.datetime.now(dt.UTC)
    return packet.seal(reading, meter.key, headend, meter.key.suite, now=when, rng=os.urandom)


def open_reading(
    sealed: bytes,
    headend: HeadEndKeys,
    meters: MeterRegistry,
    *,
    now: dt.datetime | None = None,
) -> OpenedPacket:
    """The head-end's side: decrypt, check the meter's certificate and signature, decode.

    Raises `InvalidPacket` (its `reason` says why) for a packet of an unknown, revoked or
    expired meter, a bad signature, or bytes that are not a sealed reading to these keys.
    """
    return packet.open(sealed, headend, meters, now=now or dt.datetime.now(dt.UTC))


def _public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read public key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"{path} is not an EC public key")
    return key


def verify_bill(bill: bytes, proof: bytes, public: Path) -> VerifiedReading:
    """Anyone's check of a bill and one reading's proof, with public files only.

    `bill` and `proof` are what `meterseal export-bill BILL_ID --reading METER:COUNTER`
    writes; `public` is a directory with the deployment's `ca.cert.pem`, `billing.pub.pem`
    and `metrology.pub.pem`. Checks the billing service's signature, the metrology
    authority's countersignature, the meter's signature and the reading's inclusion in the
    bill; raises `ReadingProofError` (a `MetersealError`) naming the first that fails.
    """
    directory = Path(public)
    try:
        ca = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {directory / CA_CERT}: {exc}") from exc
    authority = _public_key(directory / "metrology.pub.pem")
    return verify_reading(
        bill,
        ReadingProof.from_cbor(proof),
        ca_certificate=ca,
        billing_key=_public_key(directory / "billing.pub.pem"),
        authority_key=authority,
        authority_kid=kid_of(public_bytes(authority)),
    )
