"""Job records on disk: whole, written by two threads at once, and a cancel stays."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest

from meterseal.jobs import records
from meterseal.jobs.lifecycle import JobState
from meterseal.jobs.records import JobBook, JobRecord
from meterseal.runtime.durable import write_durably


def test_two_threads_saving_one_record_never_fail_and_leave_it_whole(tmp_path: Path) -> None:
    # A Manager's runner thread saves progress while an API thread saves a cancel: with one
    # scratch file per process, one renamed the other's away (FileNotFoundError) or put a
    # half-written record in place.
    book = JobBook(tmp_path / "jobs")
    records = [
        JobRecord("job-1", "validation", {"pad": "x" * 200_000, "n": n}, JobState.RUNNING, 0.0)
        for n in (1, 2)
    ]
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def saver(record: JobRecord) -> None:
        start.wait()
        try:
            for _ in range(30):
                book.save(record)
        except BaseException as exc:  # every failure is the test's finding
            failures.append(exc)

    threads = [threading.Thread(target=saver, args=(r,)) for r in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert book.load("job-1").spec["n"] in (1, 2)
    left = sorted(p.name for p in (tmp_path / "jobs").iterdir())
    assert left == ["job-1.json", "job-1.record.lock"]  # no scratch file left behind


def test_a_cancel_written_between_the_runners_read_and_its_rename_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner's progress save has read the record (running) and is about to rename its
    # own over it when a cancel arrives (another process: a JobBook of its own). Unlocked,
    # the cancel landed at once and the runner's rename put `running` back.
    directory = tmp_path / "jobs"
    runner_book = JobBook(directory)
    runner_book.save(JobRecord("job-2", "validation", {}, JobState.RUNNING, 0.0))
    # Set once the cancel has landed, or waits for the record lock: the runner then renames.
    settled = threading.Event()
    cancels: list[threading.Thread] = []

    def lock_seen_waiting(fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            settled.set()
            fcntl.flock(fd, fcntl.LOCK_EX)

    def cancel() -> None:
        try:
            book = JobBook(directory, lock=lock_seen_waiting)
            record = book.load("job-2")
            record.state, record.ended_at = JobState.CANCELLED, 7.0
            book.save(record)
        finally:
            settled.set()

    def between_read_and_rename(path: Path, data: bytes) -> None:
        if not cancels:  # the runner's save, after its read
            cancels.append(threading.Thread(target=cancel))
            cancels[0].start()
            # Unlocked, the cancel lands first; locked, it waits for this rename.
            assert settled.wait(timeout=120), "the cancel neither landed nor waited for the lock"
        write_durably(path, data)

    monkeypatch.setattr(records, "write_durably", between_read_and_rename)
    progress = JobRecord("job-2", "validation", {}, JobState.RUNNING, 0.0, written=5)
    runner_book.save(progress)
    cancels[0].join()
    kept = runner_book.load("job-2")
    assert (kept.state, kept.ended_at) == (JobState.CANCELLED, 7.0)
    # The runner's next progress save keeps the cancel too.
    assert runner_book.save(progress).state is JobState.CANCELLED
    assert runner_book.load("job-2").state is JobState.CANCELLED
