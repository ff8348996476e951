"""A deployment on disk: CA, head-end, billing, metrology and anonymization keys (0600 files).

`TrustedMaterial` is the trusted stages' share of it: the head-end keys, the CA certificate
and the anonymization key, from the deployment directory or released by the CAS.
`issue_tls_identity` gives a service its TLS certificate from the deployment CA (``tls/``),
`load_tls_identity` reads it back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.accounts.token_key import TOKEN_KEY_FILE, ensure_token_key
from meterseal.crypto import certs
from meterseal.crypto.at_rest import (
    ensure_secret_file,
    private_directory,
    read_secret_file,
    write_private_file,
    write_secret_file,
)
from meterseal.crypto.envelope import Rng
from meterseal.crypto.keys import (
    HeadEndKeys,
    kid_of,
    public_bytes,
    read_private_key,
    write_private_key,
)
from meterseal.errors import ConfigurationError, KeyFileError
from meterseal.runtime.tls import TlsIdentity

MANIFEST = "deployment.json"
CA_CERT = "ca.cert.pem"
ANONYMIZATION_KEY = "anonymization.key"
TLS_DIRECTORY = "tls"
STAGE_KEY_FILE = "stage-link.key"  # AES-256-GCM key of the bus between the trusted stages
STAGE_KEY_BYTES = 32
# Secrets that every process of one kind must hold the same copy of (every open-verify and
# anonymize-store the stage link key, every bills API and CAS replica the token key): made
# once with the deployment, never by a process at its start, where replicas would diverge.
SHARED_SECRETS = (STAGE_KEY_FILE, TOKEN_KEY_FILE)
SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Deployment:
    """Every long-lived key of one meterseal deployment."""

    directory: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    headend: HeadEndKeys
    billing_key: ec.EllipticCurvePrivateKey
    metrology_key: ec.EllipticCurvePrivateKey
    anonymization_key: bytes  # HMAC key of the pseudonyms; only trusted stages may hold it


@dataclass(frozen=True)
class TrustedMaterial:
    """The secrets and trust anchor of the trusted stages."""

    headend: HeadEndKeys
    ca_certificate: x509.Certificate
    anonymization_key: bytes

    @classmethod
    def of(cls, deployment: Deployment) -> TrustedMaterial:
        """The trusted stages' share of a deployment (not its CA, billing or metrology keys)."""
        return cls(deployment.headend, deployment.ca_cert, deployment.anonymization_key)


def init_deployment(
    directory: Path,
    *,
    name: str = "meterseal utility CA",
    passphrase: bytes | None = None,
    now: dt.datetime,
    rng: Rng = os.urandom,
) -> Deployment:
    """Create CA, head-end, billing and metrology keys in `directory` (which must be empty)."""
    if (directory / MANIFEST).exists():
        raise ConfigurationError(f"{directory} already holds a deployment; pick another directory")
    private_directory(directory)
    os.chmod(directory, 0o700)  # also when it existed: it holds every key of the deployment
    ca_key, ca_cert = certs.create_ca(name, now=now, rng=rng)
    deployment = Deployment(
        directory,
        ca_key,
        ca_cert,
        HeadEndKeys.generate(),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
        rng(32),
    )
    write_private_key(directory / "ca.key.pem", ca_key, passphrase)
    (directory / CA_CERT).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    deployment.headend.save(directory, passphrase)
    write_secret_file(directory / ANONYMIZATION_KEY, deployment.anonymization_key, passphrase)
    for role, key in (("billing", deployment.billing_key), ("metrology", deployment.metrology_key)):
        write_private_key(directory / f"{role}.key.pem", key, passphrase)
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (directory / f"{role}.pub.pem").write_bytes(pem)
    ensure_shared_secrets(directory, passphrase)
    (directory / MANIFEST).write_text(
        json.dumps(_manifest(deployment, now, passphrase is not None), indent=2) + "\n"
    )
    return deployment


def ensure_shared_secrets(directory: Path, passphrase: bytes | None) -> dict[str, bool]:
    """Make the `SHARED_SECRETS` missing from `directory`; each file name -> made now."""
    made = {STAGE_KEY_FILE: not (directory / STAGE_KEY_FILE).exists()}
    ensure_secret_file(directory / STAGE_KEY_FILE, lambda: os.urandom(STAGE_KEY_BYTES), passphrase)
    made[TOKEN_KEY_FILE] = ensure_token_key(directory, passphrase)
    return made


def _manifest(deployment: Deployment, now: dt.datetime, encrypted: bool) -> dict[str, object]:
    public = deployment.headend.public()
    return {
        "format": 1,
        "created": now.isoformat(),
        "ca": deployment.ca_cert.subject.rfc4514_string(),
        "headend_kids": {name: kid.hex() for name, (kid, _) in public.keys.items()},
        "billing_kid": kid_of(public_bytes(deployment.billing_key.public_key())).hex(),
        "metrology_kid": kid_of(public_bytes(deployment.metrology_key.public_key())).hex(),
        "encrypted": encrypted,
    }


def keys_encrypted(directory: Path) -> bool:
    """Whether the deployment in `directory` (if any) keeps its keys under a passphrase."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("encrypted") is True


def _ec_key(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    key = read_private_key(path, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} is not an EC key")
    return key


def load_deployment(directory: Path, passphrase: bytes | None = None) -> Deployment:
    """Load what `init_deployment` wrote."""
    if not (directory / MANIFEST).exists():
        raise ConfigurationError(
            f"no deployment in {directory}; run `meterseal keys init {directory}`"
        )
    ca_cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    return Deployment(
        directory,
        _ec_key(directory / "ca.key.pem", passphrase),
        ca_cert,
        HeadEndKeys.load(directory, passphrase),
        _ec_key(directory / "billing.key.pem", passphrase),
        _ec_key(directory / "metrology.key.pem", passphrase),
        read_secret_file(directory / ANONYMIZATION_KEY, passphrase),
    )


def issue_tls_identity(
    deployment: Deployment,
    service: str,
    hosts: Sequence[str],
    *,
    passphrase: bytes | None,
    now: dt.datetime,
    rng: Rng = os.urandom,
) -> tuple[Path, Path]:
    """Issue `service` a TLS key and certificate (server for `hosts` too); their paths."""
    if not SERVICE_NAME.fullmatch(service):
        raise ConfigurationError(f"service names are 1-64 of a-z 0-9 . _ - (got {service!r})")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certs.issue_service_certificate(
        deployment.ca_key,
        deployment.ca_cert,
        service,
        key.public_key(),
        hosts=hosts,
        now=now,
        rng=rng,
    )
    private_directory(deployment.directory / TLS_DIRECTORY)
    cert_path, key_path = tls_identity_paths(deployment.directory, service)
    write_private_key(key_path, key, passphrase)
    write_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def tls_identity_paths(directory: Path, name: str) -> tuple[Path, Path]:
    """Where `name`'s TLS certificate and key live in a deployment directory."""
    tls = directory / TLS_DIRECTORY
    return tls / f"{name}.cert.pem", tls / f"{name}.key.pem"


def load_tls_identity(directory: Path, name: str, passphrase: bytes | None) -> TlsIdentity:
    """`name`'s TLS certificate and key (`meterseal certs issue` wrote them)."""
    cert_path, key_path = tls_identity_paths(directory, name)
    if not cert_path.exists():
        raise ConfigurationError(
            f"no TLS certificate {cert_path}; run `meterseal certs issue {name} -d {directory}`"
        )
    return TlsIdentity.read(cert_path, key_path, passphrase)


def load_ca_certificate(directory: Path) -> x509.Certificate:
    """The deployment's CA certificate, the trust anchor of every TLS connection."""
    path = directory / CA_CERT
    if not path.exists():
        raise ConfigurationError(f"no CA certificate in {directory}; run `meterseal keys init`")
    return x509.load_pem_x509_certificate(path.read_bytes())
