"""The command log on a file: length-prefixed CBOR entries, appended under a lock, synced.

Each record is a 4-byte big-endian length and one entry's canonical CBOR (`commands.log`).
Appends take an exclusive `flock` on the file, read the last entry to chain on, write the
record with O_APPEND and fsync before returning: an entry returned is on disk, and two
processes appending at once (the portal and the CLI) still form one chain.

A crash in the middle of an append can leave part of a record at the end of the file (a
**torn tail**): a length prefix cut short, fewer octets than the prefix announces, or octets
the file system extended the file with but never wrote (zeros). Readers hold the lock an
appender holds, so a torn tail seen under it is always a crash's. It is never an entry:
reading the log refuses it (`entries`), `read` reports it beside the complete entries, and
`recover` (the head-end's start, and any append) moves its octets aside to
`commands.log.torn-OFFSET` and cuts the file back to the last complete entry. Anything else
that does not parse (a damaged record with complete records after it, a length beyond any
record) is damage, not a crash, and is refused everywhere: recovery never cuts entries away.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from meterseal.commands.log import LogEntry, decode_entry, encode_entry, next_entry
from meterseal.commands.model import CommandFormatError
from meterseal.runtime.durable import sync_directory, write_durably

_LENGTH = struct.Struct(">I")
MAX_RECORD = 1 << 20
_ENTRY_HEAD = 0x86  # an entry's CBOR begins as an array of six
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TornTail:
    """Octets after the last complete entry that form no entry: an append cut short."""

    offset: int  # where the torn record begins (the end of the last complete entry)
    length: int

    def __str__(self) -> str:
        return (
            f"a torn last entry of {self.length} bytes at byte {self.offset} "
            "(an append cut short by a crash; it is no entry)"
        )


@dataclass(frozen=True, slots=True)
class LogContents:
    """What the file holds: its complete entries, and the torn tail after them if any."""

    entries: list[LogEntry]
    torn: TornTail | None = None


class CommandLogFile:
    """An append-only command log in one file (made on the first append)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.recovered: list[TornTail] = []  # torn tails this object's appends moved aside

    def read(self) -> LogContents:
        """The complete entries and any torn tail; CommandFormatError if the file is damaged."""
        if not self.path.exists():
            return LogContents([])
        with open(self.path, "rb") as file:
            fcntl.flock(file, fcntl.LOCK_SH)
            return parse(file.read(), self.path)

    def entries(self) -> list[LogEntry]:
        """Every entry, oldest first; CommandFormatError if the file is damaged or torn."""
        contents = self.read()
        if contents.torn is not None:
            raise CommandFormatError(
                f"{self.path} ends in {contents.torn}: the head-end recovers it when it starts "
                "(`meterseal command log` does too)"
            )
        return contents.entries

    def recover(self) -> TornTail | None:
        """Move a torn tail aside and cut the file back to its last complete entry; the tail
        recovered (None: the file was whole). CommandFormatError if the file is damaged."""
        if not self.path.exists():
            return None
        with self._locked() as fd:
            return self._recover_locked(fd)

    def append(self, kind: str, at_ms: int, body: bytes) -> LogEntry:
        """Chain one entry onto the log and sync it; the stored entry (CommandFormatError, and
        nothing written, if it is longer than a record may be)."""
        return self.append_after(kind, at_ms, lambda _entries: body)

    def append_after(
        self, kind: str, at_ms: int, make: Callable[[list[LogEntry]], bytes]
    ) -> LogEntry:
        """Chain the entry whose body `make` derives from the entries before it, under the
        log's lock (so a counter taken from the log is still the next one when written)."""
        with self._locked() as fd:
            self._recover_locked(fd)  # a crash's torn tail must not sit under the new entry
            existing = parse(_whole(fd), self.path).entries
            body = make(existing)
            entry = next_entry(existing[-1] if existing else None, kind, at_ms, body)
            record = encode_entry(entry)
            if len(record) > MAX_RECORD:  # written, it would read as damage and stop the log
                raise CommandFormatError(
                    f"a {kind} entry of {len(record)} bytes is longer than a log record "
                    f"({MAX_RECORD} bytes): not appended"
                )
            os.write(fd, _LENGTH.pack(len(record)) + record)
            os.fsync(fd)
            return entry

    def _recover_locked(self, fd: int) -> TornTail | None:
        torn = parse(_whole(fd), self.path).torn
        if torn is None:
            return None
        evidence = self.path.with_name(f"{self.path.name}.torn-{torn.offset}")
        # The octets stay for whoever investigates the crash.
        write_durably(evidence, os.pread(fd, torn.length, torn.offset))
        os.ftruncate(fd, torn.offset)
        os.fsync(fd)
        sync_directory(self.path.parent)
        self.recovered.append(torn)
        log.warning("%s: recovered %s; its octets are in %s", self.path, torn, evidence)
        return torn

    @contextmanager
    def _locked(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock


def _whole(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def parse(data: bytes, path: Path) -> LogContents:
    """The entries of a log file's octets and its torn tail; CommandFormatError on damage."""
    entries: list[LogEntry] = []
    offset = 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            return _torn_or_damaged(entries, data, offset, path)
        (length,) = _LENGTH.unpack_from(data, offset)
        start = offset + _LENGTH.size
        if length > MAX_RECORD:
            return _torn_or_damaged(entries, data, offset, path, cut=False)
        if start + length > len(data):
            return _torn_or_damaged(entries, data, offset, path)
        try:
            entries.append(decode_entry(data[start : start + length]))
        except CommandFormatError:
            return _torn_or_damaged(entries, data, offset, path, cut=False)
        offset = start + length
    return LogContents(entries)


def _torn_or_damaged(
    entries: list[LogEntry], data: bytes, offset: int, path: Path, cut: bool = True
) -> LogContents:
    """The torn tail from `offset` if a crashed append explains it, else CommandFormatError.

    A crash leaves a prefix of one record (`cut`: the record ends before its length says) or
    zeros; a prefix never holds a complete entry of its own, so one found inside is damage
    (a damaged length in front of entries that are there) and nothing is cut away.
    """
    rest = data[offset:]
    zeros = not any(rest)
    if zeros or (cut and len(rest) <= _LENGTH.size + MAX_RECORD and not _holds_entry(rest)):
        return LogContents(entries, TornTail(offset, len(rest)))
    raise CommandFormatError(f"{path}: the record at byte {offset} is damaged")


def _holds_entry(region: bytes) -> bool:
    """Whether a complete entry record lies anywhere inside `region`."""
    position = region.find(_ENTRY_HEAD, _LENGTH.size)
    while position != -1:
        (length,) = _LENGTH.unpack_from(region, position - _LENGTH.size)
        if 0 < length <= len(region) - position:
            try:
                decode_entry(region[position : position + length])
                return True
            except CommandFormatError:
                pass
        position = region.find(_ENTRY_HEAD, position + 1)
    return False
