"""Durable job records: one JSON file per job in the deployment's `jobs/` directory.

A record is replaced whole (written beside and synced, then renamed: runtime.durable), so a
reader never sees half of one and a record survives the Manager's restart or a power cut. A
record on disk in a final state is never moved out of it: a user's cancel, written by another
process, wins over the runner's next progress write and over its end. Each save reads the
record on disk, checks it and renames its own over it holding an exclusive `flock` on
JOB.record.lock, so no save lands between another's read and its rename; a move of the job's
lifecycle (`move`) steps from the state it reads there, under the same lock.
Running a job takes its lease first (`lease`: an exclusive lock on JOB.lock beside the
record), so two Managers resuming the same job never both run it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterseal.errors import MetersealError
from meterseal.jobs.lifecycle import FINAL, JobEvent, JobState, step
from meterseal.runtime.durable import write_durably

# The Manager's moves of a job it read before a user's cancel (or its own end) was recorded:
# dropped against a final state on disk, not refused. Any other move steps from it.
_OVERTAKEN = frozenset((JobEvent.START, JobEvent.SUCCEED, JobEvent.FAIL))
# What a job id may be, wherever one is read (a record's file name, the HTTP API's path): the
# Manager's `job-` and 16 hex digits, and the 8 of records written before, fit with room.
JOB_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"


class UnknownJob(MetersealError):
    """No job has this id."""


class JobLeased(MetersealError):
    """Another Manager holds the job's lease: it is running the job now."""


class JobLease:
    """A Manager's exclusive hold on running one job: an exclusive `flock` on JOB.lock.

    The operating system drops the lock when the holder's process ends, however it ends, so
    a job whose Manager died is free for the next; while it lives, no other Manager (another
    process, or another Manager in this one: a `flock` belongs to its open file) runs it.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def release(self) -> None:
        """Let another Manager run the job."""
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> JobLease:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


@dataclass
class JobRecord:
    """A job as the Manager keeps it: its submission, state, progress and results."""

    job_id: str
    application: str
    spec: dict[str, Any]  # the application's input and the controller's settings
    state: JobState
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    finished: list[int] = field(default_factory=list)  # chunks whose results are written
    written: int = 0  # results written (reports, for the validation job)
    status: dict[str, Any] = field(default_factory=dict)  # the Monitor's last check
    actuations: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON holds it."""
        return {**dataclasses.asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """A record from its JSON form."""
        return cls(**{**data, "state": JobState(data["state"])})


def _take_lock(fd: int) -> None:
    """Hold an exclusive `flock` on `fd`, waiting as long as another holds it."""
    fcntl.flock(fd, fcntl.LOCK_EX)


class JobBook:
    """The job records of a deployment, one file each under `directory`."""

    def __init__(self, directory: Path, *, lock: Callable[[int], None] = _take_lock) -> None:
        self.directory = directory
        self._lock = lock  # takes the record lock on an open file (a test sees a save wait)

    def _path(self, job_id: str) -> Path:
        if re.fullmatch(JOB_ID_PATTERN, job_id) is None:  # no path, no other file
            raise UnknownJob(f"no job {job_id!r}")
        return self.directory / f"{job_id}.json"

    def load(self, job_id: str) -> JobRecord:
        """The record of `job_id`."""
        try:
            text = self._path(job_id).read_text()
        except FileNotFoundError:
            raise UnknownJob(f"no job {job_id!r} (ids: meterseal jobs list)") from None
        return JobRecord.from_dict(json.loads(text))

    def save(self, record: JobRecord) -> JobRecord:
        """Write `record` whole; a final state already on disk stays (the saved record)."""
        with self._locked(record.job_id) as path:
            if path.exists() and record.state not in FINAL:
                kept = self.load(record.job_id)
                if kept.state in FINAL:
                    record.state, record.ended_at = kept.state, kept.ended_at
            self._write(path, record)
        return record

    def move(
        self, job_id: str, event: JobEvent, at: float, progress: JobRecord | None = None
    ) -> JobRecord:
        """Move the job by `event` at time `at`, stepping from the state on disk; the record.

        Written is `progress` (the runner's own copy, its results; a new job's whole record
        for `submit`, the move from no state) or else the record on disk, with the new state.
        Read, step and write hold the record lock, so the state stepped from is the one
        recorded: a submit over an id already recorded is refused (JobStateError) and the
        record stays, a cancel of a job that ended meanwhile is refused (JobRefused), and the
        Manager's start or end of a job cancelled meanwhile leaves the cancel in place (no
        move leaves a final state; the Manager did not drive that one).
        """
        if progress is None:
            self.load(job_id)  # UnknownJob for an id never recorded, before a lock file is made
        with self._locked(job_id) as path:
            on_disk = self.load(job_id) if path.exists() else None
            record = progress if progress is not None else on_disk
            assert record is not None  # records are never removed
            if on_disk is not None and on_disk.state in FINAL and event in _OVERTAKEN:
                record.state, record.ended_at = on_disk.state, on_disk.ended_at
            else:
                record.state = step(on_disk.state if on_disk else None, event)
                if event is JobEvent.START:
                    record.started_at = at
                if record.state in FINAL:
                    record.ended_at = at
            self._write(path, record)
        return record

    @contextlib.contextmanager
    def _locked(self, job_id: str) -> Iterator[Path]:
        """The record's path, with its record lock held (from a read to a rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(job_id)
        # Not the lease's lock: the runner holds that for the whole run, and a cancel from
        # another process must get in between two of its saves.
        fd = os.open(path.with_suffix(".record.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Held from the read to the rename: a cancel written in between would be
            # renamed away (a flock is per open file, so this holds against threads too).
            self._lock(fd)
            yield path
        finally:
            os.close(fd)  # drops the lock

    @staticmethod
    def _write(path: Path, record: JobRecord) -> None:
        # Whole and synced, through a scratch file of this write's own.
        data = json.dumps(record.to_dict(), indent=1, sort_keys=True).encode()
        write_durably(path, data)

    def lease(self, job_id: str, holder: str) -> JobLease:
        """Hold `job_id`'s lease as `holder` (host, process); JobLeased if another holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(job_id).with_suffix(".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another Manager"
            os.close(fd)
            raise JobLeased(f"job {job_id} is being run by {held}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        return JobLease(fd, path)

    def held(self, job_id: str) -> bool:
        """Whether a Manager holds `job_id`'s lease now."""
        try:
            self.lease(job_id, "a probe").release()
        except JobLeased:
            return True
        return False

    def records(self) -> list[JobRecord]:
        """Every job, oldest submission first."""
        if not self.directory.is_dir():
            return []
        found = [self.load(p.stem) for p in self.directory.glob("*.json")]
        return sorted(found, key=lambda r: (r.submitted_at, r.job_id))
