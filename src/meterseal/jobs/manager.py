"""The Manager of Asperathos: submit, run, cancel and list jobs, with durable records.

A submission is recorded (`submitted`) before anything runs; `run` starts it (or resumes a
job left `running` by a Manager that stopped) on a Dask engine under the Monitor and the
Controller, writing each chunk's results once and the chunk into the record after them. A
resumed job skips finished chunks, and a chunk written but not yet recorded when the Manager
stopped is recognised by its reports' audit time (the job's own), so nothing is written twice.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import datetime as dt
import functools
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterseal.billing.completeness import Period
from meterseal.errors import ConfigurationError
from meterseal.jobs.control import Controller, Decision, Limits, controller
from meterseal.jobs.engine import Engine
from meterseal.jobs.fraud import RankingCancelled, RankSpec, rank_job
from meterseal.jobs.kvs_source import fleet_reader
from meterseal.jobs.lifecycle import FINAL, JobEvent, JobRefused, JobState, step
from meterseal.jobs.monitor import Monitor, Snapshot
from meterseal.jobs.records import JobBook, JobRecord
from meterseal.jobs.reencode import ReencodeSpec, objects_to_reencode, reencode_chunk
from meterseal.jobs.runner import chunked, run_chunks
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

APPLICATIONS = ("validation", "fraud", "reencode")


@dataclass(frozen=True)
class Control:
    """A job's deadline and controller settings, as submitted."""

    deadline: float  # seconds from the job's start
    tolerance: float = 0.0
    mode: str = "threshold"
    settings: dict[str, float] | None = None
    min_workers: int = 1
    max_workers: int = 4
    interval: float = 5.0
    task_memory: float | None = None  # MiB of the workers' trusted memory each task needs

    def as_dict(self) -> dict[str, Any]:
        """The settings as a record keeps them."""
        return {**dataclasses.asdict(self), "settings": dict(self.settings or {})}


@dataclass(frozen=True)
class Submission:
    """A job as a user asks for it: the application, its input, chunk size and control.

    Validation names its period with `first_day` and `days`; fraud names its fleet-month
    with `month` (YYYY-MM) or `first_day` and `days`, and the meters' zone `tz`.
    """

    application: str
    control: Control
    first_day: str | None = None
    days: int = 30
    month: str | None = None
    tz: str | None = None
    seed: int = 1
    chunk: int = 50
    from_kvs: bool = False  # fraud: read the KVS export (through the site's gateway)
    bucket: str | None = None  # reencode: the KVS bucket, its key prefix, the target policy
    prefix: str = ""
    policy: str | None = None


@dataclass(frozen=True)
class Site:
    """Where a Manager's jobs read and write: the store, the deployment's key files."""

    store: str
    deployment_dir: Path
    passphrase_env: str = "MS_PASSPHRASE"  # noqa: S105 - a variable name
    reports: str | None = None  # the reports' database (default: the store)
    cas: str | None = None  # the CAS workers attest to for the authority's key (jobs.attest)
    gateway: str | None = None  # the KVS gateway a re-encode job asks
    gateway_key_env: str = "MS_KVS_KEY"  # the variable holding its API key, on every worker
    gateway_ca: str | None = None  # its CA certificate's path (https)

    def audit(self) -> AuditSpec:
        """The validation job's auditor: the store and the authority's key files."""
        d = self.deployment_dir
        return AuditSpec(
            self.store,
            str(d / "metrology.key.pem"),
            str(d / "ca.cert.pem"),
            str(d / "billing.pub.pem"),
            self.passphrase_env,
            cas=self.cas,
        )


Observer = Callable[[JobRecord, Snapshot, Decision | None], None]
CheckHook = Callable[[Snapshot, Decision | None], None]


class Manager:
    """Jobs of a deployment: records in `book`, time from `clock`, ids from `new_id`."""

    def __init__(
        self,
        book: JobBook,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: f"job-{secrets.token_hex(4)}",
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
        state = step(None, JobEvent.SUBMIT)
        return self.book.save(JobRecord(self.new_id(), "validation", spec, state, now))

    def submit_fraud(self, spec: RankSpec, control: Control) -> JobRecord:
        """Record a fraud ranking job of the store's fleet; it runs on `run`."""
        if spec.chunk < 1 or spec.days < 1:
            raise ConfigurationError("chunk and days must be >= 1")
        _controller(control.as_dict())  # refused here, not when it runs
        job_id = self.new_id()
        ranking = self.book.directory / f"{job_id}-ranking.csv"
        data = {
            "rank": dataclasses.asdict(spec),
            "ranking": str(ranking),
            "control": control.as_dict(),
        }
        state = step(None, JobEvent.SUBMIT)
        return self.book.save(JobRecord(job_id, "fraud", data, state, self.clock()))

    def submit_reencode(self, spec: ReencodeSpec, control: Control) -> JobRecord:
        """Record a KVS policy re-encode job of a bucket's objects; it runs on `run`."""
        if spec.chunk < 1:
            raise ConfigurationError("chunk must be >= 1")
        spec.target()  # a policy the gateway does not know is refused here
        _controller(control.as_dict())
        data = {"reencode": dataclasses.asdict(spec), "control": control.as_dict()}
        state = step(None, JobEvent.SUBMIT)
        return self.book.save(JobRecord(self.new_id(), "reencode", data, state, self.clock()))

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a running Manager stops its tasks at its next check."""
        record = self.book.load(job_id)
        record.state = step(record.state, JobEvent.CANCEL)
        record.ended_at = self.clock()
        return self.book.save(record)

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
            record.state = step(record.state, JobEvent.START)
            record.started_at = self.clock()
            self.book.save(record)
        elif record.state is not JobState.RUNNING:
            raise JobRefused(f"job {job_id} is {record.state.value}: nothing to run")
        try:
            stop = self._stop(record.job_id, halt)
            if record.application == "fraud":
                self._rank(record, engine, observe, stop)
            elif record.application == "reencode":
                self._reencode(record, engine, observe, stop)
            else:
                self._validate(record, engine, observe, stop)
        except Exception as exc:
            record.state = step(record.state, JobEvent.FAIL)
            record.error, record.ended_at = repr(exc), self.clock()
            self.book.save(record)
            raise
        if record.state is JobState.RUNNING and not halt():
            record.state = step(record.state, JobEvent.SUCCEED)
            record.ended_at = self.clock()
        return self.book.save(record)

    def _stop(self, job_id: str, halt: Callable[[], bool]) -> Callable[[], bool]:
        """Whether a run stops at this check: halted, or the job cancelled meanwhile."""
        return lambda: halt() or self.book.load(job_id).state in FINAL

    def _validate(
        self, record: JobRecord, engine: Engine, observe: Observer | None, stop: Callable[[], bool]
    ) -> None:
        spec = record.spec
        audit = AuditSpec(**spec["audit"])
        settings = dict(spec["control"])
        limits = Limits(settings["min_workers"], settings["max_workers"])
        control = _controller(settings)
        with Store.open_read_only(audit.store) as source:
            bills = period_bills(BillStore(source), Period(*spec["period"]))
        monitor = Monitor(len(bills), settings["deadline"], self.clock)
        monitor.started = record.started_at or monitor.started
        engine.actuator.scale(limits.clamp(engine.actuator.workers()))
        with Store.open(spec["reports"]) as out:
            reports = BillStore(out)

            def keep(index: int, audited: list[Audited]) -> None:
                fresh = [a for a in audited if not _written(reports, a)]
                write_reports(reports, fresh)
                record.finished.append(index)
                record.written += len(fresh)
                self.book.save(record)

            try:
                run_chunks(
                    engine,
                    _task(audit),
                    chunked(bills, spec["chunk"]),
                    keep,
                    monitor=monitor,
                    control=control,
                    key=record.job_id,
                    interval=settings["interval"],
                    finished=set(record.finished),
                    trusted_memory=settings.get("task_memory"),
                    stop=stop,
                    on_check=self._checked(record, observe),
                )
            finally:  # the worker threads' auditors keep their stores open: close them
                _release_auditors(engine)
        record.state = self.book.load(record.job_id).state  # a cancel stays a cancel

    def _reencode(
        self, record: JobRecord, engine: Engine, observe: Observer | None, stop: Callable[[], bool]
    ) -> None:
        """Re-encode what is not under the target policy yet (a resume lists it again)."""
        spec = ReencodeSpec(**record.spec["reencode"])
        settings = record.spec["control"]
        limits = Limits(settings["min_workers"], settings["max_workers"])
        names = objects_to_reencode(spec)
        monitor = Monitor(len(names), settings["deadline"], self.clock)
        monitor.started = record.started_at or monitor.started
        engine.actuator.scale(limits.clamp(engine.actuator.workers()))

        def keep(_index: int, moved: list[str]) -> None:
            record.written += len(moved)
            self.book.save(record)

        run_chunks(
            engine,
            functools.partial(reencode_chunk, spec),
            chunked(names, spec.chunk),
            keep,
            monitor=monitor,
            control=_controller(settings),
            key=record.job_id,
            interval=settings["interval"],
            trusted_memory=settings.get("task_memory"),
            stop=stop,
            on_check=self._checked(record, observe),
        )
        record.state = self.book.load(record.job_id).state  # a cancel stays a cancel

    def _checked(self, record: JobRecord, observe: Observer | None) -> CheckHook:
        def checked(snapshot: Snapshot, decision: Decision | None) -> None:
            record.status = snapshot.to_dict()
            record.actuations += decision is not None and decision.acted
            self.book.save(record)
            if observe is not None:
                observe(record, snapshot, decision)

        return checked

    def _rank(
        self, record: JobRecord, engine: Engine, observe: Observer | None, stop: Callable[[], bool]
    ) -> None:
        """Rank the fleet (again, whole, on a resume) and write its CSV as the result."""
        settings = record.spec["control"]
        limits = Limits(settings["min_workers"], settings["max_workers"])
        engine.actuator.scale(limits.clamp(engine.actuator.workers()))

        def monitor(total: int) -> Monitor:
            watch = Monitor(total, settings["deadline"], self.clock)
            watch.started = record.started_at or watch.started
            return watch

        try:
            ranked = rank_job(
                engine,
                RankSpec(**record.spec["rank"]),
                Path(record.spec["ranking"]),
                key=record.job_id,
                monitor=monitor,
                control=_controller(settings),
                interval=settings["interval"],
                trusted_memory=settings.get("task_memory"),
                stop=stop,
                on_check=self._checked(record, observe),
                read=fleet_reader,
            )
        except RankingCancelled:
            ranked = 0
        record.written = ranked
        record.state = self.book.load(record.job_id).state  # a cancel stays a cancel

    def status(self, job_id: str) -> JobRecord:
        """The record of `job_id`."""
        return self.book.load(job_id)

    def jobs(self) -> list[JobRecord]:
        """Every job, oldest first."""
        return self.book.records()


def _controller(settings: dict[str, Any]) -> Controller:
    """The controller a job's settings name (a ConfigurationError if they are wrong)."""
    return controller(
        settings["mode"],
        tolerance=settings["tolerance"],
        limits=Limits(settings["min_workers"], settings["max_workers"]),
        **(settings["settings"] or {}),
    )


def _task(audit: AuditSpec) -> Callable[[Sequence[str]], list[Audited]]:
    return functools.partial(audit_chunk, audit)


def _release_auditors(engine: Engine) -> None:
    """Close the stores the workers' auditors hold (their PostgreSQL connections)."""
    # A worker gone: its process closed its connections with it.
    with contextlib.suppress(OSError, TimeoutError):
        engine.client.run(release_auditors)


def _written(reports: BillStore, audited: Audited) -> bool:
    """A report of this job (same bill, same audit time) is kept already."""
    return any(r.audited_at == audited.audited_at for r in reports.reports(audited.bill_id))


def month_of(month: str) -> tuple[str, int]:
    """The first day and the day count of YYYY-MM."""
    try:
        first = dt.date.fromisoformat(f"{month}-01")
    except ValueError:
        raise ConfigurationError(f"--month {month!r}: need YYYY-MM") from None
    return first.isoformat(), calendar.monthrange(first.year, first.month)[1]


def job_view(record: JobRecord) -> dict[str, Any]:
    """A job as its callers see it: state, the Monitor's last figures, control and input.

    The record's store URLs and key file paths stay on the Manager's side: a URL may hold a
    password, and a path tells a caller nothing it can use.
    """
    spec = record.spec
    if record.application == "reencode":
        moved = spec["reencode"]
        given = {k: moved[k] for k in ("bucket", "prefix", "policy", "chunk")}
        result = None
    elif record.application == "fraud":
        rank = spec["rank"]
        given = {k: rank[k] for k in ("first_day", "days", "tz", "seed", "chunk")}
        given["source"] = "kvs export" if rank.get("kvs") else "store"
        result = Path(spec["ranking"]).name if record.written else None
    else:
        start, end, _ = spec["period"]
        given = {"period": [start, end], "chunk": spec["chunk"]}
        result = None
    return {
        "job_id": record.job_id,
        "application": record.application,
        "state": record.state.value,
        "submitted_at": record.submitted_at,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "written": record.written,
        "actuations": record.actuations,
        "error": record.error,
        "status": dict(record.status),
        "control": dict(spec.get("control", {})),
        "input": given,
        "result": result,
    }


def period_of(first_day: str, days: int) -> Period:
    """The billing period of `days` UTC days from `first_day` (YYYY-MM-DD)."""
    try:
        return Period.days(dt.date.fromisoformat(first_day), days)
    except ValueError as exc:
        raise ConfigurationError(f"--from {first_day!r}: {exc}") from exc
