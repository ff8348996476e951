"""Durable writes: whole or not at all, even with two writers of one file at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from meterseal.runtime.durable import remove_durably, write_durably


def test_two_writers_of_one_file_leave_one_of_their_files_whole(tmp_path: Path) -> None:
    # Two agent passes (a cron overlap) writing one spool day: each write is renamed in whole,
    # never a mix of both, and neither fails because the other renamed a shared scratch file.
    path = tmp_path / "day.cbor"
    contents = [bytes([n]) * 200_000 for n in (1, 2)]
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(data: bytes) -> None:
        start.wait()
        try:
            for _ in range(40):
                write_durably(path, data)
        except BaseException as exc:  # every failure is the test's finding
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert path.read_bytes() in contents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.cbor"]  # no scratch left


def test_a_write_that_fails_leaves_the_old_file_and_no_scratch(tmp_path: Path) -> None:
    path = tmp_path / "counters.json"
    write_durably(path, b"old")
    with pytest.raises(TypeError):
        write_durably(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counters.json"]
    remove_durably(path)
    assert list(tmp_path.iterdir()) == []
