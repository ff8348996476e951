"""The security audit log: append-only, signed heads, tampering found on replay."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from meterseal.integrity.auditlog import (
    AuditLog,
    AuditLogError,
    LogWriter,
    check_consistency,
    replay,
)
from meterseal.integrity.platform_key import PlatformKey


@pytest.fixture(scope="module")
def key() -> PlatformKey:
    return PlatformKey.generate()


_TICKS = itertools.count(1_000)  # one clock for every log of the module: it never goes back


def _log(path: Path, key: PlatformKey, entries: list[bytes]) -> None:
    log = AuditLog(path, key, clock=lambda: float(next(_TICKS)))
    for entry in entries:
        log.append(entry)
    log.close()


def test_entries_replay_under_signed_heads_and_reopen(tmp_path: Path, key: PlatformKey) -> None:
    path = tmp_path / "audit.log"
    _log(path, key, [b"a", b"b", b"c"])
    _log(path, key, [b"d"])  # reopening appends to the same tree
    contents = replay(path.read_bytes(), key)
    assert contents.entries == [b"a", b"b", b"c", b"d"]
    assert contents.problems == []
    assert contents.heads[-1].size == 4
    assert contents.unsigned_tail == 0
    assert contents.heads[-1].signer == "software key (no TPM)"


def test_consistency_with_an_earlier_head(tmp_path: Path, key: PlatformKey) -> None:
    path = tmp_path / "audit.log"
    _log(path, key, [b"a", b"b", b"c"])
    early = replay(path.read_bytes(), key).heads[-1]
    _log(path, key, [b"d", b"e"])
    contents = replay(path.read_bytes(), key)
    check_consistency(contents, early.size, early.root)
    with pytest.raises(AuditLogError):
        check_consistency(contents, early.size, bytes(32))


def test_a_changed_entry_breaks_its_head(tmp_path: Path, key: PlatformKey) -> None:
    path = tmp_path / "audit.log"
    _log(path, key, [b"measurement-1", b"measurement-2"])
    data = path.read_bytes().replace(b"measurement-1", b"measurement-X")
    problems = replay(data, key).problems
    assert problems
    assert "does not match the entries" in problems[0]
    path.write_bytes(data)
    with pytest.raises(AuditLogError, match="does not verify"):
        AuditLog(path, key)


def test_a_head_from_the_past_is_reported(tmp_path: Path, key: PlatformKey) -> None:
    path = tmp_path / "audit.log"
    _log(path, key, [b"a"])
    late = AuditLog(path, key, clock=lambda: 1.0)  # a clock set back
    late.append(b"b", sync=True)
    late.close()
    assert "goes back in time" in replay(path.read_bytes(), key).problems[0]


def test_another_key_and_a_torn_record_are_reported(tmp_path: Path, key: PlatformKey) -> None:
    path = tmp_path / "audit.log"
    _log(path, key, [b"a"])
    data = path.read_bytes()
    assert "not signed by the platform key" in replay(data, PlatformKey.generate()).problems[0]
    assert "partial record" in replay(data[:-3], key).problems[-1]


def test_the_writer_thread_keeps_order_and_pulls_its_source_first(
    tmp_path: Path, key: PlatformKey
) -> None:
    log = AuditLog(tmp_path / "audit.log", key, clock=lambda: float(next(_TICKS)))
    produced: list[bytes] = []  # e.g. the judgements of natively re-checked calls
    writer: LogWriter

    def source() -> None:
        while produced:
            entry = produced.pop(0)

            def produce(entry: bytes = entry) -> bytes:
                return entry

            writer.append(produce)

    writer = LogWriter(log, source=source)
    writer.append(lambda: b"queued")
    produced.extend([b"from-source-1", b"from-source-2"])
    done = writer.append(lambda: b"urgent", sync=True, urgent=True)
    assert done is not None
    writer.wait(done)  # returns only once it is in the log
    assert b"urgent" in replay((tmp_path / "audit.log").read_bytes(), key).entries
    writer.close()
    log.close()
    entries = replay((tmp_path / "audit.log").read_bytes(), key).entries
    assert entries == [b"queued", b"urgent", b"from-source-1", b"from-source-2"]


def test_a_failing_write_fails_the_monitor_closed(tmp_path: Path, key: PlatformKey) -> None:
    log = AuditLog(tmp_path / "audit.log", key)
    writer = LogWriter(log)

    def broken() -> bytes:
        raise OSError("disk full")

    done = writer.append(broken, urgent=True)
    assert done is not None
    with pytest.raises(AuditLogError, match="disk full"):
        writer.wait(done)
    with pytest.raises(AuditLogError, match="cannot be written"):
        writer.append(lambda: b"next")
    with pytest.raises(AuditLogError):
        writer.close()
    log.close()
