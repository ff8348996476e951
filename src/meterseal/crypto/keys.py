"""Key material: meter signing keys, the head-end's decryption keys, and key files on disk."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, rsa, x25519
from cryptography.hazmat.primitives.hpke import MLKEM768X25519PrivateKey, MLKEM768X25519PublicKey

from meterseal.crypto.envelope import HeadEndPrivateKey, HeadEndPublicKey
from meterseal.crypto.signing import SigningKey, VerifyingKey
from meterseal.crypto.suites import CipherSuite
from meterseal.errors import KeyFileError

KID_LENGTH = 8
HEADEND_RSA_BITS = 4096
PRIVATE_FILE_MODE = 0o600

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
        directory.mkdir(parents=True, exist_ok=True)
        for name, key in self._files().items():
            write_private_key(directory / f"{name}.key.pem", key, passphrase)

    def _files(self) -> dict[str, PrivateKey]:
        return {
            "headend-rsa4096": self.rsa_key,
            "headend-p256": self.p256_key,
            "headend-x25519": self.x25519_key,
            "headend-mlkem768": self.hybrid_key.mlkem_key,
            "headend-mlkem768-x25519": self.hybrid_key.x25519_key,
        }

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
    """Write a PKCS#8 PEM private key readable by its owner only (created 0600, never wider)."""
    if isinstance(key, MLKEM768X25519PrivateKey):
        raise TypeError("write the halves of a hybrid key separately")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_secret(path, data)


def write_secret(path: Path, data: bytes) -> None:
    """Create or replace `path` with mode 0600 from the first byte on."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, PRIVATE_FILE_MODE)
    os.replace(tmp, path)


def _read_private_file(path: Path, what: str) -> bytes:
    """The bytes of a key or secret file, refused when others may read it."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode:o}); run chmod 600 {path}")
    return data


def read_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    """Load a PEM private key, refusing files that others can read."""
    data = _read_private_file(path, "key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        raise KeyFileError(f"{path}: {exc} (pass --passphrase / MS_PASSPHRASE)") from exc
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a key, or wrong passphrase") from exc
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | x25519.X25519PrivateKey
        | mlkem.MLKEM768PrivateKey,
    ) and not hasattr(key, "sign"):
        raise KeyFileError(f"{path}: unsupported key type {type(key).__name__}")
    return key  # type: ignore[return-value]


_SECRET_MAGIC = b"meterseal-secret-v1\x00"
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


def write_symmetric_secret(path: Path, secret: bytes, passphrase: bytes | None = None) -> None:
    """Write a symmetric secret (0600); with a passphrase, AES-256-GCM under an scrypt key."""
    if passphrase is None:
        write_secret(path, _SECRET_MAGIC + b"\x00" + secret)
        return
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(16), os.urandom(12)
    key = hashlib.scrypt(passphrase, salt=salt, dklen=32, maxmem=2**26, **_SCRYPT)
    sealed = AESGCM(key).encrypt(nonce, secret, _SECRET_MAGIC)
    write_secret(path, _SECRET_MAGIC + b"\x01" + salt + nonce + sealed)


def read_symmetric_secret(path: Path, passphrase: bytes | None = None) -> bytes:
    """Read what `write_symmetric_secret` wrote, refusing files that others can read."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = _read_private_file(path, "secret")
    head, body = data[: len(_SECRET_MAGIC) + 1], data[len(_SECRET_MAGIC) + 1 :]
    if head == _SECRET_MAGIC + b"\x00":
        return body
    if head != _SECRET_MAGIC + b"\x01" or len(body) < 28 + 16:
        raise KeyFileError(f"{path}: not a meterseal secret file")
    if passphrase is None:
        raise KeyFileError(f"{path} is encrypted (pass --passphrase / MS_PASSPHRASE)")
    salt, nonce, sealed = body[:16], body[16:28], body[28:]
    key = hashlib.scrypt(passphrase, salt=salt, dklen=32, maxmem=2**26, **_SCRYPT)
    try:
        return AESGCM(key).decrypt(nonce, sealed, _SECRET_MAGIC)
    except InvalidTag:
        raise KeyFileError(f"{path}: wrong passphrase or damaged file") from None
