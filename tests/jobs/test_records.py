"""Job records on disk: whole, and written by two threads of one Manager at once."""

from __future__ import annotations

import threading
from pathlib import Path

from meterseal.jobs.lifecycle import JobState
from meterseal.jobs.records import JobBook, JobRecord


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
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["job-1.json"]
