"""The release channel: each secret HPKE-encrypted to the worker's attested ephemeral key.

HPKE base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM,
through cryptography's public `Suite` API. The HPKE `info` binds the ciphertext to the
secret's name and version, the attested measurement and the nonce of the attestation, so a
released blob cannot be passed off as another secret, version or session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from meterseal.trust.errors import TrustError
from meterseal.trust.measurement import Measurement

FORMAT = "meterseal-cas-release/1"
SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


def release_info(name: str, version: int, measurement: Measurement, nonce: bytes) -> bytes:
    """The HPKE info of one released secret."""
    return cbor2.dumps([FORMAT, name, version, measurement.digest, nonce], canonical=True)


def encrypt_to(public_key: bytes, value: bytes, info: bytes) -> bytes:
    """`value` sealed to the raw X25519 `public_key` (enc || ciphertext)."""
    return SUITE.encrypt(value, x25519.X25519PublicKey.from_public_bytes(public_key), info)


@dataclass(frozen=True)
class EphemeralKey:
    """The worker's one-session X25519 key; only its public half leaves the process."""

    private: x25519.X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> EphemeralKey:
        """A fresh key (OS randomness)."""
        return cls(x25519.X25519PrivateKey.generate())

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key the quote binds."""
        return self.private.public_key().public_bytes_raw()

    def decrypt(self, sealed: bytes, info: bytes) -> bytes:
        """Open one released secret; TrustError if it was not sealed to us under `info`."""
        try:
            return SUITE.decrypt(sealed, self.private, info)
        except (InvalidTag, ValueError) as exc:
            raise TrustError(
                "a released secret does not decrypt under this worker's key and context"
            ) from exc
