"""Key material: meter signing keys, the head-end's decryption keys, and key files on disk."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, rsa, x25519
from cryptography.hazmat.primitives.hpke import MLKEM768X25519PrivateKey, MLKEM768X25519PublicKey

from meterseal.crypto import at_rest
from meterseal.crypto.envelope import HeadEndPrivateKey, HeadEndPublicKey
from meterseal.crypto.signing import SigningKey, VerifyingKey
from meterseal.crypto.suites import CipherSuite
from meterseal.errors import KeyFileError

KID_LENGTH = 8
HEADEND_RSA_BITS = 4096

PrivateKey = SigningKey | HeadEndPrivateKey | x25519.X25519PrivateKey | mlkem.MLKEM768PrivateKey


@dataclass(frozen=True)
class MeterKey:
    """A meter's identity on the meter side: its id, suite and private signing key."""

    meter_id: str
    suite: CipherSuite
    private_key: SigningKey

    def public_key(self) -> VerifyingKey:
        """The public half, as certified by the CA."""
        return self.private_key.public_key()


def generate_meter_key(meter_id: str, suite: CipherSuite) -> MeterKey:
    """A fresh meter key for `suite` (OS randomness)."""
    return MeterKey(meter_id, suite, suite.signature.generate())


def public_bytes(key: HeadEndPublicKey | VerifyingKey) -> bytes:
    """A stable byte encoding of any public key we use (for kids and fingerprints)."""
    if isinstance(key, MLKEM768X25519PublicKey):
        raise TypeError("hybrid keys are fingerprinted from their components")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def kid_of(data: bytes) -> bytes:
    """An 8-byte key id: the start of SHA-256 over the public key encoding."""
    return hashlib.sha256(data).digest()[:KID_LENGTH]


@dataclass(frozen=True)
class HybridKemKey:
    """ML-KEM-768 + X25519 (X-Wing) head-end key kept as its two serializable halves."""

    mlkem_key: mlkem.MLKEM768PrivateKey
    x25519_key: x25519.X25519PrivateKey

    def private(self) -> MLKEM768X25519PrivateKey:
        """The composite key cryptography's HPKE expects."""
        return MLKEM768X25519PrivateKey(self.mlkem_key, self.x25519_key)

    def public(self) -> MLKEM768X25519PublicKey:
        """The composite public key."""
        return MLKEM768X25519PublicKey(self.mlkem_key.public_key(), self.x25519_key.public_key())

    def public_encoding(self) -> bytes:
        """ML-KEM-768 public key followed by the X25519 public key (1216 bytes)."""
        return (
            self.mlkem_key.public_key().public_bytes_raw()
            + self.x25519_key.public_key().public_bytes_raw()
        )


@dataclass(frozen=True)
class HeadEndPublicKeys:
    """What a meter needs to seal to the head-end: one public key and kid per suite."""

    keys: dict[str, tuple[bytes, HeadEndPublicKey]]

    def for_suite(self, suite: CipherSuite) -> tuple[bytes, HeadEndPublicKey]:
        """(kid, public key) for `suite`."""
        return self.keys[suite.name]


HEADEND_KEY_NAMES = (
    "headend-rsa4096",
    "headend-p256",
    "headend-x25519",
    "headend-mlkem768",
    "headend-mlkem768-x25519",
)


@dataclass(frozen=True)
class HeadEndKeys:
    """The head-end's decryption keys, one per suite; lives only on the trusted side."""

    rsa_key: rsa.RSAPrivateKey
    p256_key: ec.EllipticCurvePrivateKey
    x25519_key: x25519.X25519PrivateKey
    hybrid_key: HybridKemKey
    _entries: dict[str, tuple[bytes, HeadEndPrivateKey, HeadEndPublicKey]] = field(
        init=False, repr=False, compare=False
    )

    @classmethod
    def generate(cls) -> HeadEndKeys:
        """Fresh keys for every suite (RSA-4096 takes a second or two)."""
        return cls(
            rsa.generate_private_key(public_exponent=65537, key_size=HEADEND_RSA_BITS),
            ec.generate_private_key(ec.SECP256R1()),
            x25519.X25519PrivateKey.generate(),
            HybridKemKey(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()),
        )

    def __post_init__(self) -> None:
        # Decrypting must not re-derive kids or rebuild the hybrid key for every packet.
        object.__setattr__(self, "_entries", self._build_entries())

    def _build_entries(self) -> dict[str, tuple[bytes, HeadEndPrivateKey, HeadEndPublicKey]]:
        hybrid_public = self.hybrid_key.public()
        entries: dict[str, tuple[bytes, HeadEndPrivateKey, HeadEndPublicKey]] = {
            "paper": (
                kid_of(public_bytes(self.rsa_key.public_key())),
                self.rsa_key,
                self.rsa_key.public_key(),
            ),
            "p256": (
                kid_of(public_bytes(self.p256_key.public_key())),
                self.p256_key,
                self.p256_key.public_key(),
            ),
            "ed25519": (
                kid_of(public_bytes(self.x25519_key.public_key())),
                self.x25519_key,
                self.x25519_key.public_key(),
            ),
            "pq": (
                kid_of(self.hybrid_key.public_encoding()),
                self.hybrid_key.private(),
                hybrid_public,
            ),
        }
        return entries

    def for_suite(self, suite: CipherSuite) -> tuple[bytes, HeadEndPrivateKey]:
        """(kid, private key) used to open packets of `suite`."""
        kid, private, _ = self._entries[suite.name]
        return kid, private

    def public(self) -> HeadEndPublicKeys:
        """The public half to hand to meters."""
        return HeadEndPublicKeys(
            {name: (kid, pub) for name, (kid, _, pub) in self._entries.items()}
        )

    def save(self, directory: Path, passphrase: bytes | None = None) -> None:
        """Write one PKCS#8 PEM per key, mode 0600, encrypted when a passphrase is given."""
        at_rest.private_directory(directory)
        for name, key in self._files().items():
            write_private_key(directory / f"{name}.key.pem", key, passphrase)

    def _files(self) -> dict[str, PrivateKey]:
        keys: tuple[PrivateKey, ...] = (
            self.rsa_key,
            self.p256_key,
            self.x25519_key,
            self.hybrid_key.mlkem_key,
            self.hybrid_key.x25519_key,
        )
        return dict(zip(HEADEND_KEY_NAMES, keys, strict=True))

    @staticmethod
    def file_names() -> tuple[str, ...]:
        """The names of the files `save` writes (and `load` reads)."""
        return tuple(f"{name}.key.pem" for name in HEADEND_KEY_NAMES)

    @classmethod
    def load(cls, directory: Path, passphrase: bytes | None = None) -> HeadEndKeys:
        """Read the keys `save` wrote."""

        def get(name: str) -> PrivateKey:
            return read_private_key(directory / f"{name}.key.pem", passphrase)

        rsa_key, p256_key, x_key = (
            get("headend-rsa4096"),
            get("headend-p256"),
            get("headend-x25519"),
        )
        mlkem_key, hx_key = get("headend-mlkem768"), get("headend-mlkem768-x25519")
        if not (
            isinstance(rsa_key, rsa.RSAPrivateKey)
            and isinstance(p256_key, ec.EllipticCurvePrivateKey)
            and isinstance(x_key, x25519.X25519PrivateKey)
            and isinstance(mlkem_key, mlkem.MLKEM768PrivateKey)
            and isinstance(hx_key, x25519.X25519PrivateKey)
        ):
            raise KeyFileError(f"head-end key files in {directory} hold the wrong key types")
        return cls(rsa_key, p256_key, x_key, HybridKemKey(mlkem_key, hx_key))


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None = None) -> None:
    """Write a PKCS#8 PEM private key, 0600; in the encrypted at-rest form with a passphrase."""
    if isinstance(key, MLKEM768X25519PrivateKey):
        raise TypeError("write the halves of a hybrid key separately")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if passphrase:
        at_rest.write_secret_file(path, pem, passphrase)
    else:
        at_rest.warn_unencrypted(path)
        at_rest.write_private_file(path, pem)  # plain PEM, which any tool reads


def read_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    """Load a private key `write_private_key` (or an earlier version) wrote; refused if shared."""
    data = at_rest.read_private_file(path, "key")
    if at_rest.is_sealed_form(data):
        key = _load_pem(path, at_rest.unseal(data, passphrase, path), None)
    elif b"ENCRYPTED PRIVATE KEY" in data[:64]:  # PKCS#8-encrypted PEM of earlier versions
        if not passphrase:
            raise at_rest.needs_passphrase(path)
        key = _load_pem(path, data, passphrase)
    else:
        at_rest.warn_unencrypted(path)
        key = _load_pem(path, data, None)
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | x25519.X25519PrivateKey
        | mlkem.MLKEM768PrivateKey,
    ) and not hasattr(key, "sign"):
        raise KeyFileError(f"{path}: unsupported key type {type(key).__name__}")
    return key  # type: ignore[return-value]


def _load_pem(path: Path, data: bytes, passphrase: bytes | None) -> object:
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except (TypeError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a key, or wrong passphrase") from exc
