"""The operator command key on disk: `command.key.pem` (trusted side) and `command.pub.pem`.

The key is an ES256 (P-256) key like the billing and metrology keys, kept in the deployment
directory under the same at-rest rules (0600, encrypted under `MS_PASSPHRASE`). Agents and
log checkers get `command.pub.pem` only; its key id (the first 8 bytes of SHA-256 over the
public key) is what a signed command names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.commands.verify import Signer
from meterseal.crypto.keys import kid_of, public_bytes, read_private_key, write_private_key
from meterseal.crypto.signing import ES256
from meterseal.errors import KeyFileError

COMMAND_KEY = "command.key.pem"
COMMAND_PUB = "command.pub.pem"
SCHEME = ES256()


@dataclass(frozen=True)
class OperatorKey:
    """The operator command key: the private key and the id commands name it by."""

    private_key: ec.EllipticCurvePrivateKey
    kid: bytes

    def signer(self) -> Signer:
        """The public half, as agents and checkers trust it."""
        return Signer(SCHEME, self.private_key.public_key())


def _kid(key: ec.EllipticCurvePublicKey) -> bytes:
    return kid_of(public_bytes(key))


def ensure_operator_key(directory: Path, passphrase: bytes | None) -> tuple[OperatorKey, bool]:
    """The deployment's operator command key, made now if missing; (key, made now)."""
    path = directory / COMMAND_KEY
    if path.exists():
        return load_operator_key(directory, passphrase), False
    key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(path, key, passphrase)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / COMMAND_PUB).write_bytes(pem)
    return operator_key(key), True


def load_operator_key(directory: Path, passphrase: bytes | None) -> OperatorKey:
    """The operator command key of `directory`; KeyFileError if it has none."""
    path = directory / COMMAND_KEY
    if not path.exists():
        raise KeyFileError(f"no {COMMAND_KEY} in {directory}; run `meterseal command keygen`")
    key = read_private_key(path, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path} is not an EC key")
    return operator_key(key)


def operator_key(key: ec.EllipticCurvePrivateKey) -> OperatorKey:
    """The operator command key around a P-256 private key (from its file or from the CAS's
    "command-key" secret: `trust.material.command_key_from`)."""
    return OperatorKey(key, _kid(key.public_key()))


def load_signers(paths: list[Path]) -> dict[bytes, Signer]:
    """Trusted operator public keys (PEM files) by key id."""
    signers: dict[bytes, Signer] = {}
    for path in paths:
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"{path}: not a public key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not SCHEME.accepts(key):
            raise KeyFileError(f"{path}: not a P-256 public key")
        signers[_kid(key)] = Signer(SCHEME, key)
    return signers
