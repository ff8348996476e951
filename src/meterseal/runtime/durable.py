"""Files that survive a power cut once written: whole or not at all, and synced with their
directory (a rename or an unlink is only durable once the directory is synced)."""

from __future__ import annotations

import os
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
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    with open(scratch, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(scratch, path)
    sync_directory(path.parent)


def remove_durably(path: Path) -> None:
    """Remove `path`, and sync its directory so that it stays removed."""
    path.unlink()
    sync_directory(path.parent)
