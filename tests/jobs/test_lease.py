"""Two Managers resuming the same job: only the lease holder runs it; worker stores closed."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from meterseal.jobs.control import Decision
from meterseal.jobs.engine import Engine, local_engine
from meterseal.jobs.lifecycle import JobRefused, JobState
from meterseal.jobs.monitor import Snapshot
from meterseal.jobs.records import JobBook, JobLeased, JobRecord
from meterseal.jobs.service import JobRunner
from meterseal.jobs.validation import open_auditor_stores
from tests.billing.conftest import Month
from tests.jobs.test_manager import manager, reports_of, submit
from tests.jobs.test_validation import bill_all


def test_only_one_of_two_managers_runs_a_resumed_job(
    month: Month, engine: Engine, tmp_path: Path
) -> None:
    bill_all(month)
    first, second = manager(tmp_path / "jobs"), manager(tmp_path / "jobs")
    job = submit(month, tmp_path, first)
    # As if a Manager had stopped while running it: both see a job to resume.
    job.state = JobState.RUNNING
    (tmp_path / "jobs" / f"{job.job_id}.json").write_text(json.dumps(job.to_dict()))
    refusals: list[str] = []
    stores_during: list[int] = []

    def meanwhile(record: JobRecord, _s: Snapshot, _d: Decision | None) -> None:
        stores_during.append(open_auditor_stores())
        with pytest.raises(JobLeased) as refused:
            second.run(job.job_id, engine)
        refusals.append(str(refused.value))
        assert second.book.held(job.job_id)

    ended = first.run(job.job_id, engine, meanwhile)
    assert ended.state is JobState.SUCCEEDED
    assert refusals
    assert all(f"is being run by {first.holder}" in r for r in refusals)
    assert reports_of(tmp_path) == 2  # written once, by the holder
    assert not second.book.held(job.job_id)  # released at the end of the run
    with pytest.raises(JobRefused):
        second.run(job.job_id, engine)  # now it has nothing left to run
    # The worker threads' auditors held their stores during the run and not after it.
    assert max(stores_during) >= 1
    assert open_auditor_stores() == 0


def test_a_halted_managers_job_is_free_for_the_next(
    month: Month, engine: Engine, tmp_path: Path
) -> None:
    bill_all(month)
    first, second = manager(tmp_path / "jobs"), manager(tmp_path / "jobs")
    job = submit(month, tmp_path, first)
    assert first.run(job.job_id, engine, halt=lambda: True).state is JobState.RUNNING
    assert not first.book.held(job.job_id)
    # A runner leaves alone a job another Manager holds, and takes it once free.
    lease = JobBook(tmp_path / "jobs").lease(job.job_id, "a Manager elsewhere")
    runner = JobRunner(second, functools.partial(local_engine, 1, processes=False), poll=0.1)
    assert runner._next() is None
    lease.release()
    assert runner._next() is not None
    assert second.run(job.job_id, engine).state is JobState.SUCCEEDED
    assert reports_of(tmp_path) == 2
