"""Sealing: a secret at rest, encrypted under a key bound to the worker's measurement.

    key = HKDF-SHA256(platform sealing secret, info = label || measurement)
    sealed = CBOR [format, measurement, label, iv, AES-256-GCM(key, iv, secret, aad)]

with aad the CBOR of [format, measurement, label]. A worker whose code or configuration
changed has another measurement, hence another key: it cannot unseal what the old one
sealed (SGX's MRENCLAVE sealing policy). The measurement in the header only explains the
refusal; the key derivation is what enforces it.

Simulated: the platform sealing secret is a 0600 file in the deployment directory
(`platform-sealing.key`, encrypted under the deployment passphrase when one is set), where SGX
would derive it inside the CPU. Whoever can read that file (and knows the passphrase) can
unseal anything, so this gives no hardware guarantee.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meterseal.crypto import cose
from meterseal.crypto.at_rest import read_secret_file, write_private_file, write_secret_file
from meterseal.trust.errors import SealingError
from meterseal.trust.measurement import DIGEST_BYTES, Measurement

FORMAT = "meterseal-sealed/1"
SEALING_SECRET = "platform-sealing.key"  # noqa: S105 - a file name
IV_BYTES = 12
SECRET_BYTES = 32


def init_sealing_secret(
    directory: Path,
    rng: Callable[[int], bytes] = os.urandom,
    *,
    passphrase: bytes | None = None,
) -> bool:
    """Create the simulated platform sealing secret in `directory`; False if present."""
    path = directory / SEALING_SECRET
    if path.exists():
        return False
    write_secret_file(path, rng(SECRET_BYTES), passphrase)
    return True


def load_sealing_secret(directory: Path, passphrase: bytes | None = None) -> bytes:
    """The simulated platform sealing secret of `directory` (0600 file)."""
    return read_secret_file(directory / SEALING_SECRET, passphrase)


def _key(platform_secret: bytes, measurement: Measurement, label: str) -> bytes:
    if len(platform_secret) < SECRET_BYTES:
        raise SealingError(f"the platform sealing secret must be at least {SECRET_BYTES} bytes")
    info = FORMAT.encode() + b"\x00" + label.encode() + b"\x00" + measurement.digest
    return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(platform_secret)


def _aad(digest: bytes, label: str) -> bytes:
    return cbor2.dumps([FORMAT, digest, label], canonical=True)


def seal(
    secret: bytes,
    measurement: Measurement,
    platform_secret: bytes,
    *,
    label: str = "",
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """`secret` encrypted for this measurement on this platform; `label` names what it is."""
    iv = rng(IV_BYTES)
    body = AESGCM(_key(platform_secret, measurement, label)).encrypt(
        iv, secret, _aad(measurement.digest, label)
    )
    return cbor2.dumps([FORMAT, measurement.digest, label, iv, body], canonical=True)


def unseal(
    sealed: bytes, measurement: Measurement, platform_secret: bytes, *, label: str = ""
) -> bytes:
    """The secret if this measurement on this platform sealed it as `label`; else SealingError."""
    try:
        item = cose.loads_strict(sealed)
    except cose.CoseFormatError:
        raise SealingError("not a sealed secret (not CBOR)") from None
    if (
        not isinstance(item, list | tuple)
        or len(item) != 5
        or item[0] != FORMAT
        or not isinstance(item[1], bytes)
        or len(item[1]) != DIGEST_BYTES
        or not isinstance(item[2], str)
        or not isinstance(item[3], bytes)
        or len(item[3]) != IV_BYTES
        or not isinstance(item[4], bytes)
    ):
        raise SealingError(f"not a sealed secret ({FORMAT})")
    _, digest, sealed_label, iv, body = item
    if digest != measurement.digest:
        raise SealingError(
            f"sealed for measurement {digest.hex()[:12]}…, and this worker measures "
            f"{measurement.short}: its code or configuration changed, so it cannot unseal"
        )
    if sealed_label != label:
        raise SealingError(f"sealed as {sealed_label!r}, not {label!r}")
    try:
        return AESGCM(_key(platform_secret, measurement, label)).decrypt(
            iv, body, _aad(digest, label)
        )
    except InvalidTag:
        raise SealingError(
            "the sealed secret does not open: another platform sealed it, or it was altered"
        ) from None


def seal_to_file(
    path: Path, secret: bytes, measurement: Measurement, platform_secret: bytes, *, label: str
) -> None:
    """Seal `secret` into a 0600 file."""
    write_private_file(path, seal(secret, measurement, platform_secret, label=label))


def unseal_file(
    path: Path, measurement: Measurement, platform_secret: bytes, *, label: str
) -> bytes:
    """Unseal what `seal_to_file` wrote."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SealingError(f"cannot read sealed file {path}: {exc.strerror}") from exc
    return unseal(data, measurement, platform_secret, label=label)
