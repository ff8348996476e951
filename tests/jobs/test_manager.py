"""The Manager: durable records, a run to its end, resume after a restart, cancel."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from meterseal.jobs.control import Decision
from meterseal.jobs.engine import Engine
from meterseal.jobs.lifecycle import JobRefused, JobState
from meterseal.jobs.manager import Manager
from meterseal.jobs.metrics import JobMetrics
from meterseal.jobs.monitor import Snapshot
from meterseal.jobs.records import JobBook, JobRecord, UnknownJob
from meterseal.jobs.submission import Control
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.billing.conftest import Month
from tests.jobs.test_validation import bill_all, spec_for


def manager(where: Path) -> Manager:
    """A Manager on `where`'s records, with a clock that moves a second per read."""
    ticks = itertools.count(1_790_000_000)
    ids = (f"job-{i}" for i in itertools.count())
    return Manager(JobBook(where), clock=lambda: float(next(ticks)), new_id=lambda: next(ids))


def submit(month: Month, tmp_path: Path, boss: Manager) -> JobRecord:
    """A validation job of the month, reports into their own database."""
    spec = spec_for(month, tmp_path)
    reports = f"sqlite:///{tmp_path / 'reports.db'}"
    control = Control(deadline=3600.0, tolerance=0.05, max_workers=2, interval=0.5)
    return boss.submit_validation(spec, reports, month.period, 1, control)


def reports_of(tmp_path: Path) -> int:
    """How many reports the job's database holds."""
    with Store.open(f"sqlite:///{tmp_path / 'reports.db'}") as store:
        return len(BillStore(store).reports())


def test_a_job_runs_to_its_end_and_its_record_says_so(
    month: Month, engine: Engine, tmp_path: Path
) -> None:
    bill_all(month)
    boss = manager(tmp_path / "jobs")
    job = submit(month, tmp_path, boss)
    assert boss.status(job.job_id).state is JobState.SUBMITTED
    metrics = JobMetrics()

    def publish(record: JobRecord, snapshot: Snapshot, decision: Decision | None) -> None:
        metrics.observe(record.job_id, snapshot, decision)

    ended = boss.run(job.job_id, engine, publish)
    assert (ended.state, ended.written, sorted(ended.finished)) == (JobState.SUCCEEDED, 2, [0, 1])
    assert ended.status["progress"] == 1.0
    assert reports_of(tmp_path) == 2
    sample = metrics.registry.get_sample_value
    assert sample("meterseal_job_progress", {"job": job.job_id}) == 1.0
    assert sample("meterseal_job_workers", {"job": job.job_id}) == 1.0

    # A restarted Manager reads the same records.
    again = manager(tmp_path / "jobs")
    assert [r.job_id for r in again.jobs()] == [job.job_id]
    with pytest.raises(JobRefused):
        again.run(job.job_id, engine)


def test_a_resumed_job_writes_nothing_twice(month: Month, engine: Engine, tmp_path: Path) -> None:
    bill_all(month)
    boss = manager(tmp_path / "jobs")
    job = boss.run(submit(month, tmp_path, boss).job_id, engine)
    # As if the Manager had stopped after writing the reports, before recording the chunks.
    job.state, job.finished, job.ended_at = JobState.RUNNING, [], None
    (tmp_path / "jobs" / f"{job.job_id}.json").write_text(json.dumps(job.to_dict()))
    resumed = manager(tmp_path / "jobs").run(job.job_id, engine)
    assert resumed.state is JobState.SUCCEEDED
    assert reports_of(tmp_path) == 2


def test_cancel_is_recorded_and_refused_once_final(
    month: Month, engine: Engine, tmp_path: Path
) -> None:
    bill_all(month)
    boss = manager(tmp_path / "jobs")
    job = submit(month, tmp_path, boss)
    assert boss.cancel(job.job_id).state is JobState.CANCELLED
    with pytest.raises(JobRefused):
        boss.cancel(job.job_id)
    with pytest.raises(JobRefused):
        boss.run(job.job_id, engine)
    with pytest.raises(UnknownJob):
        boss.status("job-nope")


def test_a_running_job_stops_when_cancelled(month: Month, engine: Engine, tmp_path: Path) -> None:
    bill_all(month)
    boss = manager(tmp_path / "jobs")
    job = submit(month, tmp_path, boss)

    def cancel_at_first_check(record: JobRecord, *_: object) -> None:
        if boss.status(record.job_id).state is JobState.RUNNING:
            boss.cancel(record.job_id)

    ended = boss.run(job.job_id, engine, cancel_at_first_check)
    assert ended.state is JobState.CANCELLED
    assert boss.status(job.job_id).state is JobState.CANCELLED
