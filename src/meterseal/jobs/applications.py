"""The Manager's applications: how one run of a validation, fraud or re-encode job goes.

Each takes a `JobRun` (the record, the book it saves progress into, the engine, the clock and
the run's check hooks) and runs the job's chunks under its Monitor and Controller; the
Manager (jobs.manager) owns the record's lifecycle around it: start, fail, succeed, lease.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterseal.billing.completeness import Period
from meterseal.jobs.control import Decision, Limits
from meterseal.jobs.engine import Engine
from meterseal.jobs.fraud import RankingCancelled, RankSpec, rank_job
from meterseal.jobs.kvs_source import fleet_reader
from meterseal.jobs.monitor import Monitor, Snapshot
from meterseal.jobs.records import JobBook, JobRecord
from meterseal.jobs.reencode import ReencodeSpec, objects_to_reencode, reencode_chunk
from meterseal.jobs.runner import chunked, run_chunks
from meterseal.jobs.submission import job_controller
from meterseal.jobs.validation import (
    Audited,
    AuditSpec,
    audit_chunk,
    period_bills,
    release_auditors,
    write_reports,
)
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore

CheckHook = Callable[[Snapshot, Decision | None], None]


@dataclass(frozen=True)
class JobRun:
    """One run of a job: its record and the book that keeps it, the engine, the hooks."""

    record: JobRecord
    book: JobBook
    engine: Engine
    clock: Callable[[], float]
    stop: Callable[[], bool]  # whether the run stops at this check (halted or cancelled)
    on_check: CheckHook  # after each check: the record's status, the caller's observer

    @property
    def settings(self) -> dict[str, Any]:
        """The job's control settings, as its record keeps them."""
        return dict(self.record.spec["control"])

    def monitor(self, total: int) -> Monitor:
        """A Monitor of `total` tasks whose clock started when the job did (a resume too)."""
        watch = Monitor(total, self.settings["deadline"], self.clock)
        watch.started = self.record.started_at or watch.started
        return watch

    def start_workers(self) -> None:
        """Bring the engine's workers within the job's limits before its first task."""
        settings = self.settings
        limits = Limits(settings["min_workers"], settings["max_workers"])
        self.engine.actuator.scale(limits.clamp(self.engine.actuator.workers()))


def validate(run: JobRun) -> None:
    """Audit the period's bills, writing each chunk's reports once and then recording it."""
    record, spec, settings = run.record, run.record.spec, run.settings
    audit = AuditSpec(**spec["audit"])
    control = job_controller(settings)
    with Store.open_read_only(audit.store) as source:
        bills = period_bills(BillStore(source), Period(*spec["period"]))
    monitor = run.monitor(len(bills))
    run.start_workers()
    with Store.open(spec["reports"]) as out:
        reports = BillStore(out)

        def keep(index: int, audited: list[Audited]) -> None:
            fresh = [a for a in audited if not _written(reports, a)]
            write_reports(reports, fresh)
            record.finished.append(index)
            record.written += len(fresh)
            run.book.save(record)

        try:
            run_chunks(
                run.engine,
                functools.partial(audit_chunk, audit),
                chunked(bills, spec["chunk"]),
                keep,
                monitor=monitor,
                control=control,
                key=record.job_id,
                interval=settings["interval"],
                finished=set(record.finished),
                trusted_memory=settings.get("task_memory"),
                stop=run.stop,
                on_check=run.on_check,
            )
        finally:  # the worker threads' auditors keep their stores open: close them
            _release_auditors(run.engine)


def reencode(run: JobRun) -> None:
    """Re-encode what is not under the target policy yet (a resume lists it again)."""
    record, settings = run.record, run.settings
    spec = ReencodeSpec(**record.spec["reencode"])
    names = objects_to_reencode(spec)
    monitor = run.monitor(len(names))
    run.start_workers()

    def keep(_index: int, moved: list[str]) -> None:
        record.written += len(moved)
        run.book.save(record)

    run_chunks(
        run.engine,
        functools.partial(reencode_chunk, spec),
        chunked(names, spec.chunk),
        keep,
        monitor=monitor,
        control=job_controller(settings),
        key=record.job_id,
        interval=settings["interval"],
        trusted_memory=settings.get("task_memory"),
        stop=run.stop,
        on_check=run.on_check,
    )


def rank(run: JobRun) -> None:
    """Rank the fleet (again, whole, on a resume) and write its CSV as the result."""
    record, settings = run.record, run.settings
    run.start_workers()
    try:
        ranked = rank_job(
            run.engine,
            RankSpec(**record.spec["rank"]),
            Path(record.spec["ranking"]),
            key=record.job_id,
            monitor=run.monitor,
            control=job_controller(settings),
            interval=settings["interval"],
            trusted_memory=settings.get("task_memory"),
            stop=run.stop,
            on_check=run.on_check,
            read=fleet_reader,
        )
    except RankingCancelled:
        ranked = 0
    record.written = ranked


RUNS: dict[str, Callable[[JobRun], None]] = {
    "validation": validate,
    "fraud": rank,
    "reencode": reencode,
}


def _release_auditors(engine: Engine) -> None:
    """Close the stores the workers' auditors hold (their PostgreSQL connections)."""
    # A worker gone: its process closed its connections with it.
    with contextlib.suppress(OSError, TimeoutError):
        engine.client.run(release_auditors)


def _written(reports: BillStore, audited: Audited) -> bool:
    """A report of this job (same bill, same audit time) is kept already."""
    return any(r.audited_at == audited.audited_at for r in reports.reports(audited.bill_id))
