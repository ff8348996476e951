"""Secret files at rest: owner-only files and directories, encrypted when a passphrase is set.

Every private key and secret file meterseal writes goes through `write_secret_file`:

    no passphrase:   MAGIC || 0x00 || content               (and the warning below, once)
    passphrase:      MAGIC || 0x01 || salt(16) || nonce(12) || AES-256-GCM(key, nonce, content)
                     key = scrypt(passphrase, salt, n=2**15, r=8, p=1), associated data MAGIC

PEM private keys are the content of such a file when a passphrase is set, not PKCS#8
encrypted PEM: cryptography's PKCS#8 encryption derives its key with 2048 rounds of PBKDF2,
which a guesser gets through about 300 times faster than this scrypt. Unencrypted keys stay
plain PEM, and files from earlier versions (plain or PKCS#8-encrypted PEM) still load.

Files are created 0600 and directories 0700 from the first byte on, whatever the umask: a
file is written under a temporary name `mkstemp` opened 0600, then renamed over the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from meterseal.errors import KeyFileError

PASSPHRASE_VARIABLE = "MS_PASSPHRASE"  # noqa: S105 - the name of a variable
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
MAGIC = b"meterseal-secret-v1\x00"
PLAIN, SEALED = b"\x00", b"\x01"
SALT_BYTES, NONCE_BYTES, TAG_BYTES, KEY_BYTES = 16, 12, 16, 32
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1

logger = logging.getLogger(__name__)
_warned = False  # the unencrypted-secrets warning is given once per process


def warn_unencrypted(path: Path) -> None:
    """Log, once per process, that secrets are kept unencrypted (naming MS_PASSPHRASE)."""
    global _warned
    if _warned:
        return
    _warned = True
    logger.warning(
        "key files are not encrypted (%s): set %s to encrypt them at rest",
        path,
        PASSPHRASE_VARIABLE,
    )


def needs_passphrase(path: Path) -> KeyFileError:
    """The error for an encrypted file read without a passphrase."""
    return KeyFileError(
        f"{path} is encrypted: set {PASSPHRASE_VARIABLE} (or the variable --passphrase-env "
        "names) to the deployment's passphrase"
    )


def private_directory(path: Path) -> Path:
    """`path`, created 0700 if missing (its parents as usual); an existing one is kept as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, DIRECTORY_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise KeyFileError(f"{path} is not a directory") from None
        return path
    os.chmod(path, DIRECTORY_MODE)  # the umask may have narrowed it; exact, never wider
    return path


def write_private_file(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Create (or replace) `path` with `data`, mode 0600 from the first byte on, atomically.

    With `replace=False` an existing file is kept and False returned: of processes creating
    the same file at once, exactly one wins and all then read the winner's.
    """
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if `path` exists, where a rename would overwrite it
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def create_private_file(path: Path) -> bool:
    """Create `path` empty with mode 0600 unless it exists (for files others open later)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def read_private_file(path: Path, what: str = "key") -> bytes:
    """The bytes of a key or secret file, refused when others may read it."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode:o}); run chmod 600 {path}")
    return data


def _key(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(
        passphrase
    )


def seal(content: bytes, passphrase: bytes | None) -> bytes:
    """The at-rest form of `content`: encrypted under `passphrase`, or marked plain."""
    if not passphrase:
        return MAGIC + PLAIN + content
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    return (
        MAGIC
        + SEALED
        + salt
        + nonce
        + AESGCM(_key(passphrase, salt)).encrypt(nonce, content, MAGIC)
    )


def is_sealed_form(data: bytes) -> bool:
    """Whether `data` is in the at-rest format (encrypted or not)."""
    return data.startswith(MAGIC) and len(data) > len(MAGIC)


def is_encrypted(data: bytes) -> bool:
    """Whether `data` is the encrypted at-rest form."""
    return data.startswith(MAGIC + SEALED)


def unseal(data: bytes, passphrase: bytes | None, path: Path) -> bytes:
    """What `seal` was given; KeyFileError naming `path` if it cannot be had."""
    head, body = data[: len(MAGIC) + 1], data[len(MAGIC) + 1 :]
    if head == MAGIC + PLAIN:
        warn_unencrypted(path)
        return body
    if head != MAGIC + SEALED or len(body) < SALT_BYTES + NONCE_BYTES + TAG_BYTES:
        raise KeyFileError(f"{path}: not a meterseal secret file")
    if not passphrase:
        raise needs_passphrase(path)
    salt, nonce = body[:SALT_BYTES], body[SALT_BYTES : SALT_BYTES + NONCE_BYTES]
    try:
        return AESGCM(_key(passphrase, salt)).decrypt(
            nonce, body[SALT_BYTES + NONCE_BYTES :], MAGIC
        )
    except InvalidTag:
        raise KeyFileError(f"{path}: wrong passphrase or damaged file") from None


def write_secret_file(path: Path, content: bytes, passphrase: bytes | None) -> None:
    """Write `content` to a 0600 file, encrypted when a passphrase is given (else warn once)."""
    if not passphrase:
        warn_unencrypted(path)
    write_private_file(path, seal(content, passphrase))


def ensure_secret_file(path: Path, make: Callable[[], bytes], passphrase: bytes | None) -> bytes:
    """The secret in `path`, created from `make()` first if missing (one winner if racing)."""
    if not path.exists():
        if not passphrase:
            warn_unencrypted(path)
        write_private_file(path, seal(make(), passphrase), replace=False)
    return read_secret_file(path, passphrase)


def read_secret_file(path: Path, passphrase: bytes | None, what: str = "secret") -> bytes:
    """What `write_secret_file` wrote; KeyFileError naming the file and what to set."""
    return unseal(read_private_file(path, what), passphrase, path)
