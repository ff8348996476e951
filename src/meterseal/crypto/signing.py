"""Signature schemes of the suites: RS256 (RSA-1024, paper), ES256, EdDSA and ML-DSA-44."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

SigningKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | mldsa.MLDSA44PrivateKey
)
VerifyingKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | mldsa.MLDSA44PublicKey
)

P256_COORD = 32
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class SignatureScheme(Protocol):
    """A COSE signature algorithm bound to one key type."""

    @property
    def name(self) -> str:
        """See the implementing classes."""
        ...

    @property
    def cose_alg(self) -> int:
        """See the implementing classes."""
        ...

    def generate(self) -> SigningKey:
        """A fresh private key (OS randomness: key generation is not replayable)."""
        ...

    def accepts(self, key: VerifyingKey) -> bool:
        """Whether `key` is a public key of this scheme."""
        ...

    def sign(self, key: SigningKey, data: bytes) -> bytes:
        """COSE signature bytes over `data`."""
        ...

    def verify(self, key: VerifyingKey, signature: bytes, data: bytes) -> None:
        """Raise InvalidSignature unless `signature` is valid for `data`."""
        ...


@dataclass(frozen=True)
class RS256:
    """RSASSA-PKCS1-v1_5 with SHA-256 (COSE -257, RFC 8812), RSA-1024 as in the SGX paper."""

    key_size: int = 1024
    name: str = "RS256"
    cose_alg: int = -257

    def generate(self) -> SigningKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=self.key_size)

    def accepts(self, key: VerifyingKey) -> bool:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size == self.key_size

    def sign(self, key: SigningKey, data: bytes) -> bytes:
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, key: VerifyingKey, signature: bytes, data: bytes) -> None:
        assert isinstance(key, rsa.RSAPublicKey)
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


@dataclass(frozen=True)
class ES256:
    """ECDSA P-256 with SHA-256 (COSE -7); COSE carries r||s, not DER."""

    name: str = "ES256"
    cose_alg: int = -7

    def generate(self) -> SigningKey:
        return ec.generate_private_key(ec.SECP256R1())

    def accepts(self, key: VerifyingKey) -> bool:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)

    def sign(self, key: SigningKey, data: bytes) -> bytes:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(P256_COORD, "big") + s.to_bytes(P256_COORD, "big")

    def verify(self, key: VerifyingKey, signature: bytes, data: bytes) -> None:
        # No isinstance assert: the registry admitted only keys this scheme `accepts`.
        if len(signature) != 2 * P256_COORD:
            raise InvalidSignature
        r = int.from_bytes(signature[:P256_COORD], "big")
        s = int.from_bytes(signature[P256_COORD:], "big")
        cast(ec.EllipticCurvePublicKey, key).verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)


@dataclass(frozen=True)
class EdDSA:
    """Ed25519 (COSE -8 "EdDSA", the value pycose and deployed stacks understand)."""

    name: str = "EdDSA"
    cose_alg: int = -8

    def generate(self) -> SigningKey:
        return ed25519.Ed25519PrivateKey.generate()

    def accepts(self, key: VerifyingKey) -> bool:
        return isinstance(key, ed25519.Ed25519PublicKey)

    def sign(self, key: SigningKey, data: bytes) -> bytes:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(data)

    def verify(self, key: VerifyingKey, signature: bytes, data: bytes) -> None:
        cast(ed25519.Ed25519PublicKey, key).verify(signature, data)


@dataclass(frozen=True)
class MLDSA44:
    """ML-DSA-44 (FIPS 204; COSE -48, RFC 9964), pure mode with an empty context."""

    name: str = "ML-DSA-44"
    cose_alg: int = -48

    def generate(self) -> SigningKey:
        return mldsa.MLDSA44PrivateKey.generate()

    def accepts(self, key: VerifyingKey) -> bool:
        return isinstance(key, mldsa.MLDSA44PublicKey)

    def sign(self, key: SigningKey, data: bytes) -> bytes:
        assert isinstance(key, mldsa.MLDSA44PrivateKey)
        return key.sign(data)

    def verify(self, key: VerifyingKey, signature: bytes, data: bytes) -> None:
        assert isinstance(key, mldsa.MLDSA44PublicKey)
        key.verify(signature, data)
