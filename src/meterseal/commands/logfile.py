"""The command log on a file: length-prefixed CBOR entries, appended under a lock, synced.

Each record is a 4-byte big-endian length and one entry's canonical CBOR (`commands.log`).
Appends take an exclusive `flock` on the file, read the last entry to chain on, write the
record with O_APPEND and fsync before returning: an entry returned is on disk, and two
processes appending at once (the portal and the CLI) still form one chain.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from meterseal.commands.log import LogEntry, decode_entry, encode_entry, next_entry
from meterseal.commands.model import CommandFormatError

_LENGTH = struct.Struct(">I")
MAX_RECORD = 1 << 20


class CommandLogFile:
    """An append-only command log in one file (made on the first append)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[LogEntry]:
        """Every entry, oldest first; CommandFormatError if the file is damaged."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as file:
            fcntl.flock(file, fcntl.LOCK_SH)
            return _read(file.read(), self.path)

    def append(self, kind: str, at_ms: int, body: bytes) -> LogEntry:
        """Chain one entry onto the log and sync it; the stored entry."""
        return self.append_after(kind, at_ms, lambda _entries: body)

    def append_after(
        self, kind: str, at_ms: int, make: Callable[[list[LogEntry]], bytes]
    ) -> LogEntry:
        """Chain the entry whose body `make` derives from the entries before it, under the
        log's lock (so a counter taken from the log is still the next one when written)."""
        with self._locked() as fd:
            size = os.fstat(fd).st_size
            data = os.pread(fd, size, 0) if size else b""
            existing = _read(data, self.path)
            body = make(existing)
            entry = next_entry(existing[-1] if existing else None, kind, at_ms, body)
            record = encode_entry(entry)
            os.write(fd, _LENGTH.pack(len(record)) + record)
            os.fsync(fd)
            return entry

    @contextmanager
    def _locked(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock


def _read(data: bytes, path: Path) -> list[LogEntry]:
    entries: list[LogEntry] = []
    offset = 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise CommandFormatError(f"{path}: a record is cut short at byte {offset}")
        (length,) = _LENGTH.unpack_from(data, offset)
        start = offset + _LENGTH.size
        if length > MAX_RECORD or start + length > len(data):
            raise CommandFormatError(f"{path}: a record is cut short at byte {offset}")
        entries.append(decode_entry(data[start : start + length]))
        offset = start + length
    return entries
