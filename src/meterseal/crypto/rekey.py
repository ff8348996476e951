"""Encrypt the secret files of existing directories under a passphrase, or change it.

`rekey(directories, old, new)` rewrites, in each directory (not below it), every file that
holds a secret: a PEM private key (unencrypted, PKCS#8-encrypted, or in the at-rest form), a
file in the at-rest form, and a fleet file of an earlier version (bare CBOR `fleet-*.cbor`).
Public keys, certificates and manifests are left alone. Each file is replaced atomically, so
an interrupted run leaves every file readable under either the old or the new passphrase.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from meterseal.crypto import at_rest
from meterseal.crypto.keys import read_private_key, write_private_key
from meterseal.errors import KeyFileError

_PEM_PRIVATE = b"PRIVATE KEY-----"


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(64)


def secret_files(directory: Path) -> list[Path]:
    """The files of `directory` that hold a private key or a secret (by their first bytes)."""
    found = []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        head = _head(path)
        pem_key = path.suffix == ".pem" and _PEM_PRIVATE in head
        legacy_fleet = path.name.startswith("fleet-") and path.suffix == ".cbor"
        if at_rest.is_sealed_form(head) or pem_key or legacy_fleet:
            found.append(path)
    return found


def rekey_file(path: Path, old: bytes | None, new: bytes) -> None:
    """Rewrite the secret file `path` (read under `old`) encrypted under `new`."""
    data = at_rest.read_private_file(path)
    if path.suffix == ".pem":
        write_private_key(path, read_private_key(path, old), new)
    elif at_rest.is_sealed_form(data):
        at_rest.write_secret_file(path, at_rest.unseal(data, old, path), new)
    else:  # a bare-CBOR fleet file of an earlier version
        at_rest.write_secret_file(path, data, new)


def rekey(directories: Iterable[Path], old: bytes | None, new: bytes) -> list[Path]:
    """Encrypt every secret file of `directories` under `new`; the files rewritten.

    With `old` equal to `new`, files already encrypted are kept as they are.
    """
    done = []
    for directory in directories:
        if not directory.is_dir():
            raise KeyFileError(f"{directory} is not a directory")
        for path in secret_files(directory):
            if old == new and at_rest.is_encrypted(_head(path)):
                continue
            rekey_file(path, old, new)
            done.append(path)
    return done
