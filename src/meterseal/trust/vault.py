"""The CAS master key: secrets at rest under it, and the MAC over the log's tree heads.

The master key is a 32-byte 0600 file in the deployment directory (`cas-master.key`,
encrypted under the deployment passphrase when one is set). Two
keys are derived from it with HKDF-SHA256: one encrypts each secret version with
AES-256-GCM (associated data: the secret's name and version, so a ciphertext cannot be
moved to another name or version), the other MACs each (size, root) the log reaches (so a
log rewritten with only database access does not verify).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meterseal.crypto.at_rest import private_directory, read_secret_file, write_secret_file
from meterseal.trust.errors import TrustError

MASTER_KEY = "cas-master.key"
KEY_BYTES = 32
IV_BYTES = 12
_SECRETS_FORMAT = "meterseal-cas-secret/1"


def init_master_key(
    directory: Path,
    rng: Callable[[int], bytes] = os.urandom,
    *,
    passphrase: bytes | None = None,
) -> bool:
    """Create the CAS master key file in `directory`; False if it exists already."""
    path = directory / MASTER_KEY
    if path.exists():
        return False
    write_secret_file(path, rng(KEY_BYTES), passphrase)
    return True


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=b"meterseal-cas/" + purpose).derive(
        master
    )


@dataclass(frozen=True)
class Vault:
    """Encrypts secret versions and MACs log heads with keys derived from the master key."""

    master: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.master) != KEY_BYTES:
            raise TrustError(f"the CAS master key is {KEY_BYTES} bytes")

    @classmethod
    def from_deployment(cls, directory: Path, passphrase: bytes | None = None) -> Vault:
        """The vault of the master key in `directory` (run `meterseal cas init` to create it)."""
        path = directory / MASTER_KEY
        if not path.exists():
            raise TrustError(f"no CAS master key {path}; run `meterseal cas init -d {directory}`")
        return cls(read_secret_file(path, passphrase))

    def seal(self, name: str, version: int, value: bytes, iv: bytes | None = None) -> bytes:
        """iv || AES-256-GCM(value) bound to (name, version)."""
        iv = iv or os.urandom(IV_BYTES)
        aead = AESGCM(_derive(self.master, b"secrets"))
        return iv + aead.encrypt(iv, value, self._aad(name, version))

    def open(self, name: str, version: int, sealed: bytes) -> bytes:
        """The value of a stored secret version; TrustError if key, name or version differ."""
        aead = AESGCM(_derive(self.master, b"secrets"))
        try:
            return aead.decrypt(sealed[:IV_BYTES], sealed[IV_BYTES:], self._aad(name, version))
        except (InvalidTag, ValueError):
            raise TrustError(
                f"secret {name!r} v{version} does not decrypt under this CAS master key"
            ) from None

    def head_mac(self, size: int, root: bytes) -> bytes:
        """HMAC-SHA-256 over the log head (size, root)."""
        message = cbor2.dumps(["meterseal-cas-log/1", size, root], canonical=True)
        return hmac.new(_derive(self.master, b"log"), message, hashlib.sha256).digest()

    @staticmethod
    def _aad(name: str, version: int) -> bytes:
        return cbor2.dumps([_SECRETS_FORMAT, name, version], canonical=True)


def init_cas_files(directory: Path, passphrase: bytes | None = None) -> dict[str, bool]:
    """The CAS master key and the simulated platform's keys (kept if present): name -> created."""
    from meterseal.trust.attestation import PLATFORM_KEY, init_simulated_platform
    from meterseal.trust.sealing import SEALING_SECRET, init_sealing_secret

    private_directory(directory)
    return {
        MASTER_KEY: init_master_key(directory, passphrase=passphrase),
        PLATFORM_KEY: init_simulated_platform(directory, passphrase),
        SEALING_SECRET: init_sealing_secret(directory, passphrase=passphrase),
    }
