"""Meter identities made at the factory: a manufacturer's CSR, or its own meter certificate.

`meters provision` makes a meter's key centrally. A manufacturer usually makes it inside the
meter, where it stays; the utility then gets one of two things:

* a **CSR** (PKCS#10): the meter's public key and id (subject serialNumber, as IEEE 802.1AR
  puts it), signed with the meter's own key. `certify_request` checks that signature (the
  meter holds the private key), the id and the key's suite, and issues a meter certificate
  from the deployment CA for that key;
* a **certificate from the manufacturer's CA**, which the utility decided to trust
  (`check_manufacturer_ca`). `certify_manufacturer_certificate` checks the chain to one of
  the trusted manufacturer CAs, the CA's own constraints and usage, the meter certificate's
  key usage and validity, and then issues the deployment CA's certificate for the same key
  and id, valid no longer than the manufacturer's.

Either way the registry, the head-end and a bill's verifier keep one trust anchor, the
deployment CA: the utility checks the manufacturer's chain once, at import, and vouches for
the key with its own certificate. A CSR can carry a key of every suite (`suite_of`): P-256
(p256), Ed25519 (ed25519), RSA-1024 (paper) and ML-DSA-44 (pq) keys all sign PKCS#10 requests
through `cryptography`. Time and randomness are parameters; nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto.certs import METER_VALIDITY, Rng, issue_meter_certificate, meter_id_of
from meterseal.crypto.signing import VerifyingKey
from meterseal.crypto.suites import SUITES, CipherSuite
from meterseal.errors import CertificateError


@dataclass(frozen=True)
class Certified:
    """A meter certified by the deployment CA: its id, suite and new certificate."""

    meter_id: str
    suite: CipherSuite
    certificate: x509.Certificate
    source: str  # "CSR", or the manufacturer CA's subject it chained to


def suite_of(public_key: object, wanted: CipherSuite | None = None) -> CipherSuite:
    """The suite whose meters sign with `public_key` (the one wanted, if it fits)."""
    fitting = [s for s in SUITES.values() if s.signature.accepts(public_key)]  # type: ignore[arg-type]
    if wanted is not None:
        if wanted not in fitting:
            raise CertificateError(f"the meter's key does not fit suite {wanted.name}")
        return wanted
    if len(fitting) != 1:
        names = ", ".join(s.name for s in SUITES.values())
        kind = type(public_key).__name__.lstrip("_")
        raise CertificateError(f"a {kind} is the key of no meter suite ({names})")
    return fitting[0]


def _subject_id(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    if not values:
        return None
    if len(values) != 1 or not isinstance(values[0].value, str) or not values[0].value:
        raise CertificateError("the subject carries more than one meter id (serialNumber)")
    return values[0].value


def certify_request(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    request: x509.CertificateSigningRequest,
    *,
    now: dt.datetime,
    rng: Rng,
    meter_id: str | None = None,
    suite: CipherSuite | None = None,
) -> Certified:
    """The deployment CA's certificate for the key of a meter's CSR, once its signature holds."""
    try:  # a parsed CSR still decodes its key and names lazily: malformed ones raise here
        valid = request.is_signature_valid
        public_key = request.public_key()
        named = _subject_id(request.subject)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"the CSR cannot be read: {exc}") from None
    if not valid:
        # The request is not signed by the key it carries: whoever sent it may not hold it.
        raise CertificateError("the CSR's signature does not verify (tampered, or not the meter's)")
    if meter_id is None and named is None:
        raise CertificateError("the CSR names no meter (subject serialNumber); give --meter-id")
    if meter_id is not None and named is not None and named != meter_id:
        raise CertificateError(f"the CSR names meter {named!r}, not {meter_id!r}")
    chosen_id = meter_id or named
    assert chosen_id is not None
    chosen = suite_of(public_key, suite)
    certificate = issue_meter_certificate(
        ca_key, ca_cert, chosen_id, _verifying(public_key), now=now, rng=rng
    )
    return Certified(chosen_id, chosen, certificate, "CSR")


def _verifying(key: object) -> VerifyingKey:
    return key  # type: ignore[return-value] # suite_of checked it is a meter suite's key


def check_manufacturer_ca(certificate: x509.Certificate, now: dt.datetime) -> None:
    """Refuse a certificate that cannot act as a manufacturer's CA at `now`."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertificateError("not a CA certificate (no basicConstraints)") from None
    if not constraints.ca:
        raise CertificateError("not a CA certificate (basicConstraints CA is false)")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise CertificateError("the CA's key usage does not allow signing certificates")
    _valid_at(certificate, now, "the manufacturer CA")


def _valid_at(certificate: x509.Certificate, now: dt.datetime, what: str) -> None:
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if not start <= now <= end:
        raise CertificateError(f"{what} is not valid now (valid {start:%F} to {end:%F})")


def _issuer(certificate: x509.Certificate, trusted: Sequence[x509.Certificate]) -> x509.Certificate:
    for ca in trusted:
        if ca.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    issuer = certificate.issuer.rfc4514_string()
    raise CertificateError(
        f"the certificate was issued by {issuer}, which is not a trusted manufacturer CA "
        "(or its signature does not verify)"
    )


def certify_manufacturer_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    certificate: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    *,
    now: dt.datetime,
    rng: Rng,
    suite: CipherSuite | None = None,
) -> Certified:
    """The deployment CA's certificate for a manufacturer-certified meter key (chain checked)."""
    try:  # extensions and keys are decoded lazily: a malformed certificate raises on use
        return _certify_manufacturer(ca_key, ca_cert, certificate, trusted, now, rng, suite)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"the meter certificate cannot be read: {exc}") from None


def _certify_manufacturer(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    certificate: x509.Certificate,
    trusted: Sequence[x509.Certificate],
    now: dt.datetime,
    rng: Rng,
    suite: CipherSuite | None,
) -> Certified:
    manufacturer = _issuer(certificate, trusted)
    check_manufacturer_ca(manufacturer, now)
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise CertificateError("a CA certificate cannot be a meter identity")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateError(
            "the meter certificate has no key usage (want digitalSignature)"
        ) from None
    if not usage.digital_signature:
        raise CertificateError("the meter certificate's key usage does not allow signatures")
    _valid_at(certificate, now, "the meter certificate")
    meter_id = meter_id_of(certificate)
    public_key = certificate.public_key()
    chosen = suite_of(public_key, suite)
    ours = issue_meter_certificate(
        ca_key,
        ca_cert,
        meter_id,
        _verifying(public_key),
        now=now,
        rng=rng,
        # Never vouch for the key longer than its manufacturer does.
        not_after=min(now + METER_VALIDITY, certificate.not_valid_after_utc),
    )
    return Certified(meter_id, chosen, ours, manufacturer.subject.rfc4514_string())
