"""Issue meter identities in bulk and keep them in one fleet file (private keys, 0600).

The fleet file is a CBOR map {format, meters}, kept in the at-rest form of `crypto.at_rest`:
encrypted whole under the deployment passphrase when one is set. Fleet files of earlier
versions (bare CBOR) still load, with the unencrypted-keys warning.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto import at_rest
from meterseal.crypto.certs import issue_meter_certificate
from meterseal.crypto.keys import MeterKey, generate_meter_key
from meterseal.crypto.registry import MeterRecord, MeterRegistry
from meterseal.crypto.suites import CipherSuite, suite_named
from meterseal.errors import ConfigurationError

FLEET_FORMAT = 1
CHUNK = 500


@dataclass(frozen=True)
class ProvisionedMeter:
    """A meter's private key with its certificate and the customer and region it serves."""

    key: MeterKey
    certificate: x509.Certificate
    customer_id: str
    region_id: str


def meter_ids(count: int, prefix: str = "MTR") -> list[str]:
    """Stable meter ids: PREFIX-000001 …"""
    return [f"{prefix}-{i:06d}" for i in range(1, count + 1)]


def _issue_chunk(
    args: tuple[bytes, bytes, list[str], str, int, float],
) -> list[tuple[str, bytes, bytes]]:
    # Runs in worker processes: keys and certificates travel as DER bytes.
    ca_der, ca_cert_der, ids, suite_name, _, now_ts = args
    ca_key = serialization.load_der_private_key(ca_der, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_der_x509_certificate(ca_cert_der)
    suite = suite_named(suite_name)
    now = dt.datetime.fromtimestamp(now_ts, dt.UTC)
    out = []
    for meter_id in ids:
        key = generate_meter_key(meter_id, suite)
        cert = issue_meter_certificate(
            ca_key, ca_cert, meter_id, key.public_key(), now=now, rng=os.urandom
        )
        der = key.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        out.append((meter_id, der, cert.public_bytes(serialization.Encoding.DER)))
    return out


def provision(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    count: int,
    suite: CipherSuite,
    *,
    now: dt.datetime,
    prefix: str = "MTR",
    regions: int = 8,
    workers: int | None = None,
    progress: Callable[[int], None] = lambda _n: None,
) -> list[ProvisionedMeter]:
    """Issue `count` meter identities, spread over `regions` regions, one customer per meter."""
    ca_der = ca_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca_cert_der = ca_cert.public_bytes(serialization.Encoding.DER)
    ids = meter_ids(count, prefix)
    chunks = [
        (ca_der, ca_cert_der, ids[i : i + CHUNK], suite.name, i, now.timestamp())
        for i in range(0, count, CHUNK)
    ]
    workers = workers or min(os.cpu_count() or 1, len(chunks)) or 1
    issued: list[tuple[str, bytes, bytes]] = []
    if workers == 1:
        results: Iterator[list[tuple[str, bytes, bytes]]] = map(_issue_chunk, chunks)
        for chunk in results:
            issued.extend(chunk)
            progress(len(chunk))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for chunk in pool.map(_issue_chunk, chunks):
                issued.extend(chunk)
                progress(len(chunk))
    return [
        _from_der(i, meter_id, der, cert, suite, regions)
        for i, (meter_id, der, cert) in enumerate(issued)
    ]


def _from_der(
    index: int, meter_id: str, key_der: bytes, cert_der: bytes, suite: CipherSuite, regions: int
) -> ProvisionedMeter:
    private = serialization.load_der_private_key(key_der, password=None)
    key = MeterKey(meter_id, suite, private)  # type: ignore[arg-type]
    return ProvisionedMeter(
        key,
        x509.load_der_x509_certificate(cert_der),
        customer_id=f"CUST-{meter_id}",
        region_id=f"R{index % regions + 1:02d}",
    )


def save_fleet(path: Path, meters: list[ProvisionedMeter], passphrase: bytes | None = None) -> None:
    """Write the fleet (private keys included) as one 0600 file, encrypted with a passphrase."""
    rows = [
        [
            m.key.meter_id,
            m.key.suite.name,
            m.key.private_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            m.certificate.public_bytes(serialization.Encoding.DER),
            m.customer_id,
            m.region_id,
        ]
        for m in meters
    ]
    at_rest.write_secret_file(
        path, cbor2.dumps({"format": FLEET_FORMAT, "meters": rows}), passphrase
    )


def load_fleet(path: Path, passphrase: bytes | None = None) -> list[ProvisionedMeter]:
    """Read a fleet file written by `save_fleet` (KeyFileError if it needs a passphrase)."""
    raw = at_rest.read_private_file(path, "fleet")
    if at_rest.is_sealed_form(raw):
        raw = at_rest.unseal(raw, passphrase, path)
    else:  # a fleet file of an earlier version: bare CBOR
        at_rest.warn_unencrypted(path)
    try:
        data = cbor2.loads(raw)
    except cbor2.CBORDecodeError as exc:
        raise ConfigurationError(f"cannot read fleet file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FLEET_FORMAT:
        raise ConfigurationError(f"{path} is not a meterseal fleet file")
    meters = []
    for meter_id, suite_name, key_der, cert_der, customer_id, region_id in data["meters"]:
        private = serialization.load_der_private_key(key_der, password=None)
        key = MeterKey(meter_id, suite_named(suite_name), private)  # type: ignore[arg-type]
        cert = x509.load_der_x509_certificate(cert_der)
        meters.append(ProvisionedMeter(key, cert, customer_id, region_id))
    return meters


def fleet_records(
    ca_certificate: x509.Certificate, meters: list[ProvisionedMeter]
) -> list[MeterRecord]:
    """The fleet's registry records, each certificate checked against the CA (for the store)."""
    verifier = MeterRegistry(ca_certificate)
    register_fleet(verifier, meters)
    return list(verifier)


def register_fleet(registry: MeterRegistry, meters: list[ProvisionedMeter]) -> None:
    """Admit every meter's certificate into the head-end registry (chain-checked)."""
    for m in meters:
        registry.register(m.certificate, m.key.suite, m.customer_id, m.region_id)
