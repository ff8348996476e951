"""The security audit module's store: an append-only, signed log of every measurement.

The log is the bill log's construction on a file: leaf i is the i-th measurement record
(RFC 9162 Merkle tree, `transparency.merkle`), and the platform key signs tree heads (size,
root, time in milliseconds, signer label; `transparency.heads`): at once after a malicious verdict,
else at most HEAD_SECONDS after an entry, and when the log is closed. Records are
length-prefixed CBOR pairs, ["entry", bytes] or ["head", COSE_Sign1], appended with O_APPEND.
A verifier replays the file: every head must sign the tree of the entries before it, so a
removed, changed or reordered entry breaks the next head, and two heads a verifier kept can be
checked for consistency (the log only grew between them).
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.integrity.errors import IntegrityError
from meterseal.integrity.platform_key import PlatformKey
from meterseal.integrity.threads import helper_thread
from meterseal.transparency.documents import DocumentType
from meterseal.transparency.heads import HeadFormat, TreeHead
from meterseal.transparency.merkle import MerkleTree, ProofError, leaf_hash, verify_consistency

HEAD_CONTENT_TYPE = "application/meterseal-integrity-log-head+cbor"
SYNC_SECONDS = 1.0
HEAD_SECONDS = 0.25  # longest a trusted entry waits for a signed head
WRITE_DELAY = 0.1  # longest a queued entry waits for the writer thread (LogWriter)
_LENGTH = struct.Struct(">I")
MAX_RECORD = 1 << 20


class AuditLogError(IntegrityError):
    """The audit log is unreadable, or does not verify where it must."""


# A head names the kind of key that signed it: "software key (no TPM)" says no TPM did.
AUDIT_LOG_HEAD = HeadFormat(
    DocumentType(HEAD_CONTENT_TYPE, "security audit-log head", AuditLogError, AuditLogError),
    "issued_at_ms",
    names_signer=True,
)


def verified_head(signed: bytes, key: PlatformKey) -> TreeHead:
    """The head inside `signed` if the platform key signed it; AuditLogError otherwise."""
    body = AUDIT_LOG_HEAD.document.parse(signed)
    head = AUDIT_LOG_HEAD.decode(body.payload)
    if not key.verifies(body, HEAD_CONTENT_TYPE):
        raise AuditLogError(f"the head of size {head.size} is not signed by the platform key")
    return head


def _records(data: bytes) -> tuple[list[tuple[str, bytes]], bool]:
    """The (kind, bytes) records of a log file, and whether a partial record ends it."""
    records: list[tuple[str, bytes]] = []
    at = 0
    while at + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, at)
        if length > MAX_RECORD or at + _LENGTH.size + length > len(data):
            return records, True
        try:
            item = cose.loads_strict(data[at + _LENGTH.size : at + _LENGTH.size + length])
        except CoseFormatError as exc:
            raise AuditLogError(f"record at byte {at} is not CBOR: {exc}") from None
        if (
            not isinstance(item, cose.ARRAY_TYPES)
            or len(item) != 2
            or item[0] not in ("entry", "head")
            or not isinstance(item[1], bytes)
        ):
            raise AuditLogError(f"record at byte {at} is not an entry or a head")
        records.append((item[0], item[1]))
        at += _LENGTH.size + length
    return records, at != len(data)


@dataclass
class LogContents:
    """A replayed log: its entries, the heads that verified, and what did not hold."""

    entries: list[bytes] = field(default_factory=list)
    heads: list[TreeHead] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tree: MerkleTree = field(default_factory=MerkleTree)

    @property
    def unsigned_tail(self) -> int:
        """Entries after the last signed head."""
        return len(self.entries) - (self.heads[-1].size if self.heads else 0)


def replay(data: bytes, key: PlatformKey) -> LogContents:
    """Check every head of a log file against the entries before it."""
    contents = LogContents()
    records, partial = _records(data)
    last_at = 0
    for kind, value in records:
        if kind == "entry":
            contents.entries.append(value)
            contents.tree.append(leaf_hash(value))
            continue
        try:
            head = verified_head(value, key)
        except AuditLogError as exc:
            contents.problems.append(str(exc))
            continue
        if head.size != contents.tree.size or head.root != contents.tree.root:
            contents.problems.append(f"the head of size {head.size} does not match the entries")
        elif head.issued_at < last_at:
            contents.problems.append(f"the head of size {head.size} goes back in time")
        else:
            contents.heads.append(head)
            last_at = head.issued_at
    if partial:
        contents.problems.append("the log ends in a partial record (a crash while writing)")
    return contents


def check_consistency(contents: LogContents, old_size: int, old_root: bytes) -> None:
    """Check that a head seen earlier (size, root) is a prefix of this log; AuditLogError if not."""
    tree, new_size = contents.tree, contents.tree.size
    try:
        proof = tree.consistency_proof(old_size, new_size) if old_size <= new_size else []
        verify_consistency(old_size, new_size, old_root, tree.root, proof)
    except (ProofError, ValueError) as exc:
        raise AuditLogError(f"the log is not an extension of the head seen before: {exc}") from None


class AuditLog:
    """The monitor's writer: appends measurement records and signs a head after each one."""

    def __init__(
        self, path: Path, key: PlatformKey, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path, self.key, self.clock = path, key, clock
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = path.read_bytes() if path.exists() else b""
        contents = replay(existing, key)
        if contents.problems:
            more = len(contents.problems) - 3
            shown = "; ".join(contents.problems[:3]) + (f"; and {more} more" if more > 0 else "")
            raise AuditLogError(f"{path} does not verify: {shown}")
        self.tree = contents.tree
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._synced = self._signed_at = 0.0
        self.last_head: TreeHead | None = contents.heads[-1] if contents.heads else None

    def append(self, entry: bytes, *, sync: bool = False) -> TreeHead | None:
        """Append one record; sign a head over it when `sync` or HEAD_SECONDS have passed.

        `sync` (a malicious verdict) also forces the file to disk. Between heads, entries
        are written but unsigned for at most HEAD_SECONDS; `close` signs the last ones.
        """
        with self._lock:
            self.tree.append(leaf_hash(entry))
            now = self.clock()
            records = [("entry", entry)]
            head = None
            if sync or now - self._signed_at >= HEAD_SECONDS:
                head = self._head(now)
                records.append(("head", self._signed(head)))
            self._write(records)
            if sync or now - self._synced >= SYNC_SECONDS:
                os.fsync(self._fd)
                self._synced = now
            return head

    def _head(self, now: float) -> TreeHead:
        head = TreeHead(self.tree.size, self.tree.root, int(now * 1000), self.key.label)
        self.last_head, self._signed_at = head, now
        return head

    def _signed(self, head: TreeHead) -> bytes:
        return self.key.sign(AUDIT_LOG_HEAD.payload(head), HEAD_CONTENT_TYPE)

    def sign_head(self) -> TreeHead:
        """Sign a head over every entry so far (if the last head does not already cover them)."""
        with self._lock:
            if self.last_head is not None and self.last_head.size == self.tree.size:
                return self.last_head
            head = self._head(self.clock())
            self._write([("head", self._signed(head))])
            return head

    def _write(self, records: list[tuple[str, bytes]]) -> None:
        out = b""
        for kind, value in records:
            encoded = cose.dumps([kind, value])
            out += _LENGTH.pack(len(encoded)) + encoded
        os.write(self._fd, out)  # one write: O_APPEND keeps a record pair together

    def close(self) -> None:
        """Sign the last entries, flush to disk and close."""
        if self._fd >= 0 and self.tree.size:
            self.sign_head()
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


class LogWriter:
    """Appends entries to an `AuditLog` from its own thread: the caller never waits for a disk.

    The monitor judges while the program is stopped and hands the record over here, so
    encoding, hashing, head signatures and fsync happen while the program runs again. The
    thread wakes every WRITE_DELAY seconds (one wake-up for many records, not one per stop),
    at once for an urgent entry; records keep their order. Before each batch it calls
    `source` (outside its lock), which may append entries produced elsewhere (the judgements
    of calls the native fast path re-checked). `append(..., urgent=True)` returns an event set
    once the entry is in the log: `wait` for it where a report must name a head covering it.
    A write that fails makes every later `append`, `wait` and `close` raise it: the monitor
    stops, and the program with it (fail closed).
    """

    def __init__(self, log: AuditLog, source: Callable[[], None] | None = None) -> None:
        self.log, self.source = log, source
        self._queue: deque[tuple[Callable[[], bytes], bool, threading.Event | None]] = deque()
        self._ready = threading.Condition()
        self._urgent = self._closed = False
        self._error: BaseException | None = None
        self._thread = helper_thread(self._run, "integrity-audit-log")
        self._thread.start()

    def append(
        self, entry: Callable[[], bytes], *, sync: bool = False, urgent: bool = False
    ) -> threading.Event | None:
        """Queue `entry()` for the log (`sync` as `AuditLog.append`).

        An `urgent` entry is written at once; the event returned is set when it is.
        """
        done = threading.Event() if urgent else None
        with self._ready:
            self._raise_failure()
            if self._closed:
                raise AuditLogError("the audit log writer is closed")
            self._queue.append((entry, sync, done))
            if urgent:
                self._urgent = True
                self._ready.notify()
        return done

    def wait(self, done: threading.Event) -> None:
        """Wait until an urgent entry is written; raise if writing failed."""
        done.wait()
        with self._ready:
            self._raise_failure()

    def close(self) -> None:
        """Write what is queued and stop the thread (the log itself stays open)."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()
        with self._ready:
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise AuditLogError(f"the audit log cannot be written: {self._error}")

    def _run(self) -> None:
        closed = False
        while not closed:
            with self._ready:
                if not (self._urgent or self._closed):
                    self._ready.wait(WRITE_DELAY)
                pull = self.source is not None and not self._closed  # the closer pulled last
            if pull:
                self._pull()
            with self._ready:
                batch, closed = list(self._queue), self._closed
                self._queue.clear()
                self._urgent = False
            for entry, sync, done in batch:
                self._write(entry, sync)
                if done is not None:
                    done.set()

    def _pull(self) -> None:
        assert self.source is not None
        try:
            self.source()
        except Exception as exc:  # the same as a failed write: raised to the monitor
            with self._ready:
                self._error = self._error or exc

    def _write(self, entry: Callable[[], bytes], sync: bool) -> None:
        if self._error is not None:
            return
        try:
            self.log.append(entry(), sync=sync)
        except Exception as exc:  # kept and raised to the monitor at its next append
            with self._ready:
                self._error = exc
