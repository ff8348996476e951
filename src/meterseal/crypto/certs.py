"""X.509 identities: the deployment CA and the meter and TLS certificates it issues."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meterseal.crypto.signing import VerifyingKey
from meterseal.errors import CertificateError

Rng = Callable[[int], bytes]
CA_VALIDITY = dt.timedelta(days=20 * 365)
METER_VALIDITY = dt.timedelta(days=15 * 365)
TLS_VALIDITY = dt.timedelta(days=398)  # the CA/Browser Forum's cap for server certificates


def _serial(rng: Rng) -> int:
    # RFC 5280: positive, at most 20 octets; 159 bits of randomness.
    return int.from_bytes(rng(20), "big") >> 1 or 1


def create_ca(
    name: str, *, now: dt.datetime, rng: Rng, key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed P-256 CA for a utility or meter manufacturer."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial(rng))
        .not_valid_before(now)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_meter_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    meter_id: str,
    public_key: VerifyingKey,
    *,
    now: dt.datetime,
    rng: Rng,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A meter certificate whose subject serialNumber is the meter id (as IEEE 802.1AR does)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.SERIAL_NUMBER, meter_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"meter {meter_id}"),
        ]
    )
    end = now + METER_VALIDITY if not_after is None else not_after
    builder = _end_entity(ca_cert, subject, public_key, now, end, rng)
    return builder.sign(ca_key, hashes.SHA256())


def _end_entity(
    ca_cert: x509.Certificate,
    subject: x509.Name,
    public_key: VerifyingKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    rng: Rng,
) -> x509.CertificateBuilder:
    """A certificate of `subject` under `ca_cert`: no CA, for signatures only."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(_serial(rng))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
    )


def meter_id_of(cert: x509.Certificate) -> str:
    """The meter id a certificate carries in its subject serialNumber."""
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(values) != 1 or not isinstance(values[0].value, str):
        raise CertificateError("certificate carries no single meter id (subject serialNumber)")
    return values[0].value


def verify_meter_certificate(cert: x509.Certificate, ca_cert: x509.Certificate) -> str:
    """Check that `cert` is a meter certificate issued by `ca_cert`; return its meter id."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateError(
            f"certificate was not issued by {ca_cert.subject.rfc4514_string()}"
        ) from exc
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if constraints.ca:
        raise CertificateError("a CA certificate cannot be a meter identity")
    return meter_id_of(cert)


def issue_tls_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    hosts: Sequence[str] = (),
    client: bool = False,
    now: dt.datetime,
    rng: Rng,
) -> x509.Certificate:
    """A TLS server certificate for `hosts` (names or IP addresses), or a client one."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _end_entity(ca_cert, subject, public_key, now, now + TLS_VALIDITY, rng)
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    elif not client:
        raise CertificateError("a TLS server certificate needs at least one host name or address")
    return builder.sign(ca_key, hashes.SHA256())


SERVICE_URI_PREFIX = "urn:meterseal:service:"  # the SAN that names a service in its certificate


def issue_service_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    service: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    hosts: Sequence[str] = (),
    now: dt.datetime,
    rng: Rng,
) -> x509.Certificate:
    """A service's TLS certificate: client (named by a URI SAN), and server for `hosts` if any."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(SERVICE_URI_PREFIX + service)]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if hosts:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(_serial(rng))
        .not_valid_before(now)
        .not_valid_after(now + TLS_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def service_of(cert: x509.Certificate) -> str | None:
    """The service a client certificate names (its meterseal URI SAN), if it is one."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        return None
    services = [
        uri[len(SERVICE_URI_PREFIX) :]
        for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(SERVICE_URI_PREFIX)
    ]
    return services[0] if len(services) == 1 and services[0] else None
