"""Meter keys made at the factory: CSRs and manufacturer certificates certified by the utility CA.

A CSR of any suite's key is certified once its signature holds; one byte changed in it is
refused. A manufacturer's meter certificate is certified only when it chains to a trusted
manufacturer CA, is a signing end-entity certificate and is valid; the utility's certificate
never outlives the manufacturer's.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from meterseal.crypto.certs import create_ca, issue_meter_certificate, verify_meter_certificate
from meterseal.crypto.keys import generate_meter_key
from meterseal.crypto.manufacturer import (
    certify_manufacturer_certificate,
    certify_request,
    check_manufacturer_ca,
    suite_of,
)
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import ED25519, P256, SUITES, CipherSuite
from meterseal.errors import CertificateError
from tests.conftest import NOW

UTILITY_KEY, UTILITY_CA = create_ca("utility CA", now=NOW, rng=os.urandom)
MAKER_KEY, MAKER_CA = create_ca("ACME meters CA", now=NOW, rng=os.urandom)
P256_KEY = generate_meter_key("MTR-7", P256).private_key


def _csr(key: object, meter_id: str | None = "MTR-7") -> x509.CertificateSigningRequest:
    names = [x509.NameAttribute(NameOID.COMMON_NAME, "a meter")]
    if meter_id is not None:
        names.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, meter_id))
    # Ed25519 and ML-DSA sign the message itself; the others sign its SHA-256.
    pure = isinstance(key, (ed25519.Ed25519PrivateKey, mldsa.MLDSA44PrivateKey))
    algorithm = None if pure else hashes.SHA256()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    return builder.sign(key, algorithm)  # type: ignore[arg-type]


def test_a_csr_of_every_suite_is_certified_for_the_meter_s_own_key(suite: CipherSuite) -> None:
    key = generate_meter_key("MTR-7", suite)
    done = certify_request(UTILITY_KEY, UTILITY_CA, _csr(key.private_key), now=NOW, rng=os.urandom)
    assert (done.meter_id, done.suite, done.source) == ("MTR-7", suite, "CSR")
    assert verify_meter_certificate(done.certificate, UTILITY_CA) == "MTR-7"
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert done.certificate.public_key().public_bytes(*public) == key.public_key().public_bytes(
        *public
    )
    record = MeterRegistry(UTILITY_CA).register(done.certificate, done.suite, "C", "R01")
    # The head-end verifies the meter's signatures with the key the factory made.
    data = b"a reading"
    suite.signature.verify(record.public_key, suite.signature.sign(key.private_key, data), data)


@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_a_csr_changed_anywhere_is_refused_or_certifies_nothing_else(
    position: int, bit: int
) -> None:
    der = bytearray(_csr(P256_KEY).public_bytes(serialization.Encoding.DER))
    der[position % len(der)] ^= 1 << bit
    try:
        tampered = x509.load_der_x509_csr(bytes(der))
        done = certify_request(UTILITY_KEY, UTILITY_CA, tampered, now=NOW, rng=os.urandom)
    except (ValueError, x509.InvalidVersion, CertificateError):
        return  # unparseable, or its signature (or id, or key) does not hold
    # A change that still verifies must not have changed what gets certified.
    assert done.meter_id == "MTR-7"
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert done.certificate.public_key().public_bytes(
        *public
    ) == P256_KEY.public_key().public_bytes(*public)


def test_a_tampered_csr_signature_is_refused() -> None:
    der = bytearray(_csr(P256_KEY).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature, the last field
    tampered = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(CertificateError, match="CSR's signature does not verify"):
        certify_request(UTILITY_KEY, UTILITY_CA, tampered, now=NOW, rng=os.urandom)


def test_the_meter_id_comes_from_the_csr_or_the_operator_and_they_must_agree() -> None:
    anonymous = _csr(P256_KEY, meter_id=None)
    with pytest.raises(CertificateError, match="names no meter"):
        certify_request(UTILITY_KEY, UTILITY_CA, anonymous, now=NOW, rng=os.urandom)
    named = certify_request(
        UTILITY_KEY, UTILITY_CA, anonymous, now=NOW, rng=os.urandom, meter_id="MTR-9"
    )
    assert named.meter_id == "MTR-9"
    with pytest.raises(CertificateError, match="names meter 'MTR-7', not 'MTR-9'"):
        certify_request(UTILITY_KEY, UTILITY_CA, _csr(P256_KEY), now=NOW, rng=os.urandom,
                        meter_id="MTR-9")  # fmt: skip


def test_a_key_of_no_suite_or_of_another_suite_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(CertificateError, match="key of no meter suite"):
        certify_request(UTILITY_KEY, UTILITY_CA, _csr(p384), now=NOW, rng=os.urandom)
    with pytest.raises(CertificateError, match="does not fit suite ed25519"):
        certify_request(UTILITY_KEY, UTILITY_CA, _csr(P256_KEY), now=NOW, rng=os.urandom,
                        suite=ED25519)  # fmt: skip
    assert {suite_of(generate_meter_key("M", s).public_key()) for s in SUITES.values()} == set(
        SUITES.values()
    )


def _maker_cert(
    *,
    ca_key: ec.EllipticCurvePrivateKey = MAKER_KEY,
    ca_cert: x509.Certificate = MAKER_CA,
    not_after: dt.datetime | None = None,
    usage: x509.KeyUsage | Literal[False] | None = None,  # False: no key usage extension
    ca: bool = False,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "MTR-7")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(P256_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not False:
        builder = builder.add_extension(
            usage or x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
    return builder.sign(ca_key, hashes.SHA256())


def _import(cert: x509.Certificate, trusted: list[x509.Certificate] | None = None) -> object:
    return certify_manufacturer_certificate(
        UTILITY_KEY, UTILITY_CA, cert, [MAKER_CA] if trusted is None else trusted,
        now=NOW, rng=os.urandom,
    )  # fmt: skip


def test_a_trusted_manufacturer_s_certificate_is_certified_no_longer_than_it_is_valid() -> None:
    until = NOW + dt.timedelta(days=400)
    done = certify_manufacturer_certificate(
        UTILITY_KEY, UTILITY_CA, _maker_cert(not_after=until), [MAKER_CA], now=NOW, rng=os.urandom
    )
    assert (done.meter_id, done.suite, done.source) == ("MTR-7", P256, "CN=ACME meters CA")
    assert verify_meter_certificate(done.certificate, UTILITY_CA) == "MTR-7"
    assert done.certificate.not_valid_after_utc == until.replace(microsecond=0)


def test_a_certificate_from_an_untrusted_ca_is_refused() -> None:
    rogue_key, rogue_ca = create_ca("ACME meters CA", now=NOW, rng=os.urandom)  # same name
    with pytest.raises(CertificateError, match="not a trusted manufacturer CA"):
        _import(_maker_cert(ca_key=rogue_key, ca_cert=rogue_ca))
    with pytest.raises(CertificateError, match="not a trusted manufacturer CA"):
        _import(_maker_cert(), trusted=[UTILITY_CA])


def test_an_expired_ca_or_a_signing_usage_missing_is_refused() -> None:
    with pytest.raises(CertificateError, match="meter certificate is not valid now"):
        _import(_maker_cert(not_after=NOW - dt.timedelta(seconds=1)))
    no_signing = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    with pytest.raises(CertificateError, match="does not allow signatures"):
        _import(_maker_cert(usage=no_signing))
    with pytest.raises(CertificateError, match="has no key usage"):
        _import(_maker_cert(usage=False))
    with pytest.raises(CertificateError, match="a CA certificate cannot be a meter identity"):
        _import(_maker_cert(ca=True))
    with pytest.raises(CertificateError, match="not a CA certificate"):
        check_manufacturer_ca(_maker_cert(), NOW)
    later = NOW + dt.timedelta(days=30 * 365)
    with pytest.raises(CertificateError, match="manufacturer CA is not valid now"):
        check_manufacturer_ca(MAKER_CA, later)


def test_the_utility_s_own_meter_certificate_is_unchanged_by_the_validity_bound() -> None:
    key = generate_meter_key("MTR-1", P256)
    cert = issue_meter_certificate(UTILITY_KEY, UTILITY_CA, "MTR-1", key.public_key(), now=NOW,
                                   rng=os.urandom)  # fmt: skip
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=15 * 365)
