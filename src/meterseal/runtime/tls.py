"""TLS and mutual TLS between machines, with certificates from the deployment's CA.

A `TlsIdentity` is a certificate chain and its private key: a service's, read from the
deployment's ``tls/`` directory (`deployment.load_tls_identity`, the key through the at-rest
reader), or a trusted worker's, released by the CAS to its attested measurement
(`TlsIdentity.from_pem`, never from a file).

`server_context` serves TLS 1.2 or 1.3 (1.3 when both ends have it) with ECDHE and AEAD
ciphers only; given the CA it asks for a client certificate and, with `require_client`,
refuses a handshake without one from that CA (mutual TLS). `client_context` verifies the
server against the deployment CA (and its host name) and presents the client's certificate.

`HttpServer` puts a verified client certificate in the request's ASGI scope (`tls_scope`:
the ``tls`` extension, ``client_cert_chain`` and ``client_cert_name``); `runtime.peer` turns
it into the caller's identity. No web framework is imported here: trusted workers measure
this module, since it holds their released key.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meterseal.crypto.keys import read_private_key
from meterseal.errors import ConfigurationError, KeyFileError

# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3's are all of that kind).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
TlsKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class TlsIdentity:
    """A certificate chain (leaf first) and the leaf's private key."""

    chain: tuple[x509.Certificate, ...]
    key: TlsKey = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf certificate."""
        return self.chain[0]

    def pem(self) -> bytes:
        """Key (PKCS#8) then chain, PEM: what the CAS keeps as a worker's TLS secret."""
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return key + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    @classmethod
    def from_pem(cls, data: bytes) -> TlsIdentity:
        """The identity `pem()` wrote (ConfigurationError if it is not one)."""
        try:
            key = serialization.load_pem_private_key(data, None)
            chain = tuple(x509.load_pem_x509_certificates(data))
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"not a TLS key and certificate chain: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ConfigurationError("a TLS key is EC or RSA")
        return cls(chain, key)

    @classmethod
    def read(cls, cert_file: Path, key_file: Path, passphrase: bytes | None) -> TlsIdentity:
        """The chain in `cert_file` and the key in `key_file` (at rest, maybe encrypted)."""
        try:
            chain = tuple(x509.load_pem_x509_certificates(cert_file.read_bytes()))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read TLS certificate {cert_file}: {exc}") from None
        key = read_private_key(key_file, passphrase)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyFileError(f"{key_file} holds no TLS key (EC or RSA)")
        return cls(chain, key)


def load_identity(context: ssl.SSLContext, identity: TlsIdentity) -> None:
    """Have `context` present `identity` (the key never written to a file on disk)."""
    # ssl loads keys from files only: the key goes to OpenSSL through an anonymous in-memory
    # file that no other process can open, so a released key never touches a disk.
    fd = os.memfd_create("meterseal-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, identity.pem())
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _ca_pem(ca: x509.Certificate) -> str:
    return ca.public_bytes(serialization.Encoding.PEM).decode()


def server_context(
    identity: TlsIdentity, ca: x509.Certificate | None = None, *, require_client: bool = False
) -> ssl.SSLContext:
    """A server context; with `ca`, client certificates from it are asked for (or required)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    load_identity(context, identity)
    if ca is not None:
        context.load_verify_locations(cadata=_ca_pem(ca))
        context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    elif require_client:
        raise ConfigurationError("mutual TLS needs the CA that issues the client certificates")
    return context


def client_context(ca: x509.Certificate, identity: TlsIdentity | None = None) -> ssl.SSLContext:
    """A client context trusting only the deployment CA, presenting `identity` if given."""
    context = ssl.create_default_context(cadata=_ca_pem(ca))  # verifies the host name too
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    if identity is not None:
        load_identity(context, identity)
    return context


def tls_scope(ssl_object: ssl.SSLObject | None) -> dict[str, Any] | None:
    """The ASGI ``tls`` extension of a connection: its verified client certificate, if any."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    chain, name = [], None
    if der:
        cert = x509.load_der_x509_certificate(der)
        chain = [cert.public_bytes(serialization.Encoding.PEM).decode()]
        name = cert.subject.rfc4514_string()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,  # OpenSSL refuses a certificate that does not verify
        "tls_version": ssl_object.version(),
        "cipher_suite": (ssl_object.cipher() or ("",))[0],
    }
