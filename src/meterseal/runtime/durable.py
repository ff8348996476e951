"""Files that survive a power cut once written: whole or not at all, and synced with their
directory (a rename or an unlink is only durable once the directory is synced)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def sync_directory(directory: Path) -> None:
    """Sync `directory`'s entries: the files made, renamed or removed in it stay so."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """`data` in `path` whole or not at all, on disk when this returns (written to a scratch
    file and synced, renamed over `path`, the directory synced)."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        sync_directory(path.parent.parent)  # the new directory's entry is durable too
    # A scratch file of its own: two writers of `path` at once (overlapping agent passes)
    # must not write into, or rename away, each other's scratch file. Its mode is the
    # umask's, as open() makes it (the head-end's `command record` reads an agent's results).
    scratch = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def remove_durably(path: Path) -> None:
    """Remove `path`, and sync its directory so that it stays removed."""
    path.unlink()
    sync_directory(path.parent)
