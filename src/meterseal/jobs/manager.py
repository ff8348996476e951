"""The Manager of Asperathos: submit, run, cancel and list jobs, with durable records.

A submission is recorded (`submitted`) before anything runs; `run` starts it (or resumes a
job left `running` by a Manager that stopped) on a Dask engine under the Monitor and the
Controller, writing each chunk's results once and the chunk into the record after them. A
resumed job skips finished chunks, and a chunk written but not yet recorded when the Manager
stopped is recognised by its reports' audit time (the job's own), so nothing is written twice.
How each application runs is jobs.applications; what a submission holds, jobs.submission.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from meterseal.billing.completeness import Period
from meterseal.errors import ConfigurationError
from meterseal.jobs.applications import RUNS, CheckHook, JobRun, validate
from meterseal.jobs.control import Decision, Limits, controller
from meterseal.jobs.engine import Engine
from meterseal.jobs.fraud import RankSpec
from meterseal.jobs.lifecycle import FINAL, JobEvent, JobState, step
from meterseal.jobs.monitor import Snapshot
from meterseal.jobs.records import JobBook, JobRecord
from meterseal.jobs.reencode import ReencodeSpec
from meterseal.jobs.submission import (
    APPLICATIONS,
    Control,
    Site,
    Submission,
    job_controller,
    month_of,
    period_of,
)
from meterseal.jobs.validation import AuditSpec
from meterseal.storage import Store

Observer = Callable[[JobRecord, Snapshot, Decision | None], None]


def new_job_id() -> str:
    """A fresh job id: `job-` and 64 random bits as 16 hex digits."""
    # 32 bits gave even odds of two jobs sharing an id by ~77,000 jobs (1% by ~9,300); at 64
    # bits 1% takes ~600 million. A collision is still refused, never written over (`_submitted`).
    return f"job-{secrets.token_hex(8)}"


class Manager:
    """Jobs of a deployment: records in `book`, time from `clock`, ids from `new_id`."""

    def __init__(
        self,
        book: JobBook,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_job_id,
    ) -> None:
        self.book = book
        self.clock = clock
        self.new_id = new_id
        # Who holds a job's lease, as another Manager's refusal names it.
        self.holder = f"Manager {socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"

    def submit(self, asked: Submission, site: Site) -> JobRecord:
        """Record the job `asked` for, reading and writing at `site`; it runs on `run`."""
        if asked.application == "fraud":
            start, days = month_of(asked.month) if asked.month else (asked.first_day, asked.days)
            if start is None or asked.tz is None:
                raise ConfigurationError("fraud needs --month (or --from and --days) and --tz")
            if asked.from_kvs and site.gateway is None:
                raise ConfigurationError("fraud --from-kvs needs the KVS gateway (--gateway)")
            spec = RankSpec(
                site.store,
                start,
                days,
                asked.tz,
                asked.seed,
                asked.chunk,
                site.gateway if asked.from_kvs else None,
                site.gateway_key_env,
                site.gateway_ca,
            )
            return self.submit_fraud(spec, asked.control)
        if asked.application == "reencode":
            if site.gateway is None or asked.bucket is None or asked.policy is None:
                raise ConfigurationError("reencode needs a gateway (--gateway), --bucket, --policy")
            moved = ReencodeSpec(
                site.gateway,
                asked.bucket,
                asked.policy,
                asked.prefix,
                site.gateway_key_env,
                site.gateway_ca,
                asked.chunk,
            )
            return self.submit_reencode(moved, asked.control)
        if asked.application != "validation":
            raise ConfigurationError(
                f"no application {asked.application!r}: one of {', '.join(APPLICATIONS)}"
            )
        if asked.first_day is None:
            raise ConfigurationError("validation needs --from (and --days)")
        period = period_of(asked.first_day, asked.days)
        return self.submit_validation(
            site.audit(), site.reports, period, asked.chunk, asked.control
        )

    def submit_validation(
        self, audit: AuditSpec, reports: str | None, period: Period, chunk: int, control: Control
    ) -> JobRecord:
        """Record a validation job of `period`'s bills; it runs on `run`."""
        if chunk < 1:
            raise ConfigurationError("chunk must be >= 1")
        controller(
            control.mode,
            tolerance=control.tolerance,
            limits=Limits(control.min_workers, control.max_workers),
            **(control.settings or {}),
        )  # refused here, not when it runs
        _readable(audit.store)
        now = self.clock()
        spec = {
            "audit": {
                **dataclasses.asdict(audit),
                "now": int(now),
            },  # the reports' audit time: the job's
            "reports": reports or audit.store,
            "period": [period.start, period.end, period.interval],
            "chunk": chunk,
            "control": control.as_dict(),
        }
        return self._submitted(self.new_id(), "validation", spec, now)

    def submit_fraud(self, spec: RankSpec, control: Control) -> JobRecord:
        """Record a fraud ranking job of the store's fleet; it runs on `run`."""
        if spec.chunk < 1 or spec.days < 1:
            raise ConfigurationError("chunk and days must be >= 1")
        job_controller(control.as_dict())  # refused here, not when it runs
        if spec.kvs is None:
            _readable(spec.store)
        job_id = self.new_id()
        ranking = self.book.directory / f"{job_id}-ranking.csv"
        data = {
            "rank": dataclasses.asdict(spec),
            "ranking": str(ranking),
            "control": control.as_dict(),
        }
        return self._submitted(job_id, "fraud", data, self.clock())

    def submit_reencode(self, spec: ReencodeSpec, control: Control) -> JobRecord:
        """Record a KVS policy re-encode job of a bucket's objects; it runs on `run`."""
        if spec.chunk < 1:
            raise ConfigurationError("chunk must be >= 1")
        spec.target()  # a policy the gateway does not know is refused here
        job_controller(control.as_dict())
        data = {"reencode": dataclasses.asdict(spec), "control": control.as_dict()}
        return self._submitted(self.new_id(), "reencode", data, self.clock())

    def _submitted(
        self, job_id: str, application: str, data: dict[str, Any], at: float
    ) -> JobRecord:
        """The job's first record, written by the table's submit move (from no state): an id
        already recorded is refused (JobStateError), never written over."""
        record = JobRecord(job_id, application, data, JobState.SUBMITTED, at)  # as `move` steps
        return self.book.move(job_id, JobEvent.SUBMIT, at, record)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a running Manager stops its tasks at its next check."""
        return self.book.move(job_id, JobEvent.CANCEL, self.clock())

    def run(
        self,
        job_id: str,
        engine: Engine,
        observe: Observer | None = None,
        halt: Callable[[], bool] = lambda: False,
    ) -> JobRecord:
        """Run (or resume) a job to its end on `engine`; the record as it ended.

        `halt()` true at a check stops the run without ending the job: it stays `running`,
        for this Manager or another to resume (a served Manager that is stopping). The run
        holds the job's lease throughout: JobLeased while another Manager runs it.
        """
        with self.book.lease(job_id, self.holder):
            return self._run(job_id, engine, observe, halt)

    def _run(
        self, job_id: str, engine: Engine, observe: Observer | None, halt: Callable[[], bool]
    ) -> JobRecord:
        record = self.book.load(job_id)  # read under the lease: the holder before wrote last
        if record.state is JobState.SUBMITTED:
            record = self.book.move(job_id, JobEvent.START, self.clock(), record)
        step(record.state, JobEvent.RUN)  # the table refuses a job that ended: JobRefused
        try:
            stop = self._stop(record.job_id, halt)
            run = JobRun(
                record, self.book, engine, self.clock, stop, self._checked(record, observe)
            )
            RUNS.get(record.application, validate)(run)
        except Exception as exc:
            record.error = repr(exc)
            self.book.move(job_id, JobEvent.FAIL, self.clock(), record)
            raise
        if halt():  # left running, for a Manager to resume
            return self.book.save(record)
        # Stepped from the state on disk: a cancel recorded since the last check stays.
        return self.book.move(job_id, JobEvent.SUCCEED, self.clock(), record)

    def _stop(self, job_id: str, halt: Callable[[], bool]) -> Callable[[], bool]:
        """Whether a run stops at this check: halted, or the job cancelled meanwhile."""
        return lambda: halt() or self.book.load(job_id).state in FINAL

    def _checked(self, record: JobRecord, observe: Observer | None) -> CheckHook:
        def checked(snapshot: Snapshot, decision: Decision | None) -> None:
            record.status = snapshot.to_dict()
            record.actuations += decision is not None and decision.acted
            self.book.save(record)
            if observe is not None:
                observe(record, snapshot, decision)

        return checked

    def status(self, job_id: str) -> JobRecord:
        """The record of `job_id`."""
        return self.book.load(job_id)

    def jobs(self) -> list[JobRecord]:
        """Every job, oldest first."""
        return self.book.records()


def _readable(store: str) -> None:
    """Refuse a job whose input store cannot be opened for reading now (the StorageError says
    which and why), before its record is written: recorded, it would only fail when run."""
    with Store.open_read_only(store):
        pass
