"""The Manager: durable records, a run to its end, resume after a restart, cancel."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from pathlib import Path
from typing import cast

import pytest

from meterseal.jobs import applications
from meterseal.jobs.applications import JobRun
from meterseal.jobs.control import Decision
from meterseal.jobs.engine import Engine
from meterseal.jobs.fraud import RankSpec
from meterseal.jobs.lifecycle import JobEvent, JobRefused, JobState, JobStateError
from meterseal.jobs.manager import Manager, new_job_id
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


def _noop_application(monkeypatch: pytest.MonkeyPatch, where: Path, state: JobState) -> str:
    """A job of an application whose chunks are all done at once (one progress save)."""

    def run_it(run: JobRun) -> None:
        run.record.written += 1
        run.book.save(run.record)

    monkeypatch.setitem(applications.RUNS, "noop", run_it)
    JobBook(where).save(JobRecord("job-noop", "noop", {}, state, 1.0))
    return "job-noop"


NO_ENGINE = cast(Engine, None)  # the no-op application asks nothing of it


def test_a_cancel_accepted_as_the_run_ends_is_not_overwritten_by_its_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner has saved its last progress and read the job (running) when a user's cancel
    # (another process: a Manager of its own) is accepted; its end then wrote `succeeded`
    # over the recorded cancel. `halt` is asked exactly there, after the application.
    job_id = _noop_application(monkeypatch, tmp_path / "jobs", JobState.SUBMITTED)
    runner, user = manager(tmp_path / "jobs"), manager(tmp_path / "jobs")
    accepted: list[JobRecord] = []

    def cancel_as_the_run_ends() -> bool:
        if not accepted:
            accepted.append(user.cancel(job_id))
        return False

    ended = runner.run(job_id, NO_ENGINE, halt=cancel_as_the_run_ends)
    assert accepted[0].state is JobState.CANCELLED
    kept = runner.status(job_id)
    assert (ended.state, kept.state) == (JobState.CANCELLED, JobState.CANCELLED)
    assert kept.ended_at == accepted[0].ended_at
    assert kept.written == 1  # the runner's progress is kept with the cancel
    with pytest.raises(UnknownJob):
        user.cancel("job-none")
    assert not (tmp_path / "jobs" / "job-none.record.lock").exists()


def test_a_cancel_of_a_job_that_ends_meanwhile_is_refused_and_the_end_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A user's cancel read the job (running); the runner ended it before the cancel was
    # written, and the cancel then wrote `cancelled` over `succeeded`. The cancel's clock
    # is read between its read and its write, so the run ends there.
    job_id = _noop_application(monkeypatch, tmp_path / "jobs", JobState.RUNNING)
    runner = manager(tmp_path / "jobs")
    ended: list[JobRecord] = []

    def clock() -> float:
        if not ended:
            ended.append(runner.run(job_id, NO_ENGINE))
        return 2_000_000_000.0

    user = Manager(JobBook(tmp_path / "jobs"), clock=clock)
    with pytest.raises(JobRefused, match="cannot cancel when succeeded"):
        user.cancel(job_id)
    assert ended[0].state is JobState.SUCCEEDED
    assert runner.status(job_id).state is JobState.SUCCEEDED


def test_a_run_that_raises_after_a_cancel_leaves_the_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The application picked up the cancel in a progress save, then raised: failing the job
    # stepped from the runner's copy (cancelled), so the Manager's own fail was refused as
    # a bug (JobStateError) in place of the application's error.
    job_id = _noop_application(monkeypatch, tmp_path / "jobs", JobState.RUNNING)
    runner, user = manager(tmp_path / "jobs"), manager(tmp_path / "jobs")

    def cancelled_then_raises(run: JobRun) -> None:
        user.cancel(run.record.job_id)
        run.book.save(run.record)  # progress: the cancel on disk stays, and is read back
        raise RuntimeError("the store went away")

    monkeypatch.setitem(applications.RUNS, "noop", cancelled_then_raises)
    with pytest.raises(RuntimeError, match="the store went away"):
        runner.run(job_id, NO_ENGINE)
    assert runner.status(job_id).state is JobState.CANCELLED


def test_a_run_of_a_job_that_ended_is_refused_by_the_table(tmp_path: Path) -> None:
    # The refusal was written by hand beside the table's ("job X is cancelled: nothing to
    # run"), without the state and event every other refusal of the table carries.
    JobBook(tmp_path / "jobs").save(JobRecord("job-over", "noop", {}, JobState.CANCELLED, 1.0))
    with pytest.raises(JobRefused, match="job cannot run when cancelled") as refused:
        manager(tmp_path / "jobs").run("job-over", NO_ENGINE)
    assert (refused.value.state, refused.value.event) == (JobState.CANCELLED, JobEvent.RUN)


def test_a_submission_under_an_id_already_recorded_is_refused_and_the_record_stays(
    tmp_path: Path,
) -> None:
    # The first record was saved, not moved by the table's submit: a second job drawing the
    # same id replaced the first one's record (its input), even once the first had ended.
    boss = Manager(JobBook(tmp_path / "jobs"), new_id=lambda: "job-same")
    spec = RankSpec("sqlite:///unread.db", "2026-11-01", 30, "UTC", kvs="http://127.0.0.1:1")
    control = Control(deadline=60.0)
    first = boss.submit_fraud(spec, control)
    assert (first.job_id, first.state) == ("job-same", JobState.SUBMITTED)
    with pytest.raises(JobStateError, match="job cannot submit when submitted"):
        boss.submit_fraud(dataclasses.replace(spec, seed=2), control)
    boss.cancel("job-same")
    with pytest.raises(JobStateError, match="job cannot submit when cancelled"):
        boss.submit_fraud(dataclasses.replace(spec, seed=3), control)
    kept = boss.status("job-same")
    assert (kept.state, kept.spec["rank"]["seed"]) == (JobState.CANCELLED, 1)


def test_job_ids_carry_64_random_bits_and_older_shorter_ids_still_read(tmp_path: Path) -> None:
    # Ids of 32 bits (8 hex digits) had a 1% chance of two jobs sharing one by ~9,300 jobs,
    # and the second submission was then refused.
    ids = {new_job_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"job-[0-9a-f]{16}", i) for i in ids), sorted(ids)[:3]
    boss = Manager(JobBook(tmp_path / "jobs"))
    spec = RankSpec("sqlite:///unread.db", "2026-11-01", 30, "UTC", kvs="http://127.0.0.1:1")
    new = boss.submit_fraud(spec, Control(deadline=60.0))
    assert re.fullmatch(r"job-[0-9a-f]{16}", new.job_id)
    boss.book.save(JobRecord("job-1a2b3c4d", "fraud", new.spec, JobState.SUBMITTED, 1.0))
    assert boss.status("job-1a2b3c4d").job_id == "job-1a2b3c4d"
    assert boss.status(new.job_id).job_id == new.job_id
    assert boss.cancel("job-1a2b3c4d").state is JobState.CANCELLED
    assert [r.job_id for r in boss.jobs()] == ["job-1a2b3c4d", new.job_id]
    for unfit in ("../job-1", "job-1/x", "jöb-1", "j" * 65, ""):
        with pytest.raises(UnknownJob):
            boss.status(unfit)
