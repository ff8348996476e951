"""`meterseal jobs …`: batch jobs with deadlines (Asperathos' design) on Dask."""

from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    console,
)
from meterseal.errors import ConfigurationError
from meterseal.jobs.control import Decision
from meterseal.jobs.engine import local_engine
from meterseal.jobs.fraud import RankSpec
from meterseal.jobs.manager import APPLICATIONS, Control, Manager, period_of
from meterseal.jobs.metrics import DEFAULT_PORT, JobMetrics, serve_metrics
from meterseal.jobs.monitor import Snapshot
from meterseal.jobs.records import JobBook, JobRecord
from meterseal.jobs.validation import AuditSpec
from meterseal.ui import progress_bar

jobs_app = typer.Typer(help="Batch jobs with deadlines on Dask.", no_args_is_help=True)
JobId = Annotated[str, typer.Argument(help="job id (meterseal jobs list)")]
Threads = Annotated[
    bool, typer.Option("--threads", help="workers as threads of this process, not processes")
]
TrustedMemory = Annotated[
    float | None,
    typer.Option(help="MiB of trusted (enclave) memory each worker declares, a Dask resource"),
]
MetricsPort = Annotated[
    int | None,
    typer.Option(help=f"serve the job's metrics on 127.0.0.1:PORT/metrics (e.g. {DEFAULT_PORT})"),
]


def _manager(deployment_dir: Path) -> Manager:
    return Manager(JobBook(deployment_dir / "jobs"))


def _settings(pairs: list[str] | None) -> dict[str, float]:
    found: dict[str, float] = {}
    for pair in pairs or []:
        name, _, value = pair.partition("=")
        try:
            found[name.strip().replace("-", "_")] = float(value)
        except ValueError:
            raise ConfigurationError(f"--set {pair!r}: need NAME=NUMBER (kp=10)") from None
    return found


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _run(
    boss: Manager,
    job_id: str,
    workers: int,
    threads: bool,
    metrics_port: int | None,
    trusted_memory: float | None = None,
) -> JobRecord:
    """Run a job on a local cluster with a progress bar; the record as it ended."""
    record = boss.status(job_id)
    metrics = JobMetrics()
    server = None
    if metrics_port is not None:
        server, port = serve_metrics(metrics, metrics_port)
        console.print(f"metrics: http://127.0.0.1:{port}/metrics", soft_wrap=True)
    try:
        return _run_on(boss, record, workers, threads, metrics, trusted_memory)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _run_on(
    boss: Manager,
    record: JobRecord,
    workers: int,
    threads: bool,
    metrics: JobMetrics,
    trusted_memory: float | None,
) -> JobRecord:
    job_id = record.job_id
    engine_of = local_engine(workers, processes=not threads, trusted_memory=trusted_memory)
    with progress_bar(console) as bar, engine_of as engine:
        task = bar.add_task(f"{job_id} {record.application}", total=None)

        def show(rec: JobRecord, snapshot: Snapshot, decision: Decision | None) -> None:
            metrics.observe(rec.job_id, snapshot, decision)
            seen = snapshot.observation
            bar.update(task, completed=seen.done, total=seen.total)
            if decision is not None and decision.acted:
                bar.console.print(f"controller: {decision.reason} (error {seen.error:+.3f})")

        ended = boss.run(job_id, engine, show)
    _print(ended)
    return ended


def _print(record: JobRecord) -> None:
    status = record.status
    console.print(
        f"{record.job_id} {record.application}: {record.state.value}, "
        f"{record.written} results written, {record.actuations} actuations",
        soft_wrap=True,
    )
    if status.get("trusted_capacity"):
        console.print(
            f"  trusted memory {status['trusted_used']:.0f} of {status['trusted_capacity']:.0f}"
            " MiB held",
            soft_wrap=True,
        )
    if status:
        console.print(
            f"  progress {status['progress']:.1%} (expected {status['expected']:.1%}, "
            f"error {status['error']:+.3f}), {status['done']}/{status['total']} tasks, "
            f"{status['workers']} workers, {status['tasks_per_second']:.2f} tasks/s",
            soft_wrap=True,
        )
    if record.error:
        console.print(f"  error: {record.error}", soft_wrap=True)
    if record.application == "fraud" and record.written:
        console.print(f"  ranking: {record.spec['ranking']}", soft_wrap=True)


def _month(month: str) -> tuple[str, int]:
    """The first day and the day count of YYYY-MM."""
    try:
        first = dt.date.fromisoformat(f"{month}-01")
    except ValueError:
        raise ConfigurationError(f"--month {month!r}: need YYYY-MM") from None
    return first.isoformat(), calendar.monthrange(first.year, first.month)[1]


@jobs_app.command("submit")
def submit(
    application: Annotated[
        str, typer.Argument(help="validation (audit every bill) or fraud (rank the fleet)")
    ],
    first_day: Annotated[str | None, typer.Option("--from", help="the period's first day")] = None,
    days: Annotated[int, typer.Option(help="days of the period")] = 30,
    month: Annotated[
        str | None, typer.Option(help="fraud: the fleet-month YYYY-MM (instead of --from/--days)")
    ] = None,
    tz: Annotated[
        str | None, typer.Option(help="fraud: the meters' time zone (IANA), days cut in it")
    ] = None,
    seed: Annotated[int, typer.Option(help="fraud: the pipeline's seed (fraud rank's)")] = 1,
    deadline: Annotated[float, typer.Option(help="seconds the job may take")] = 3600.0,
    tolerance: Annotated[float, typer.Option(help="lateness (0..1) before actuation")] = 0.0,
    mode: Annotated[str, typer.Option(help="threshold, pid or queue")] = "threshold",
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="controller setting NAME=NUMBER (kp=10)")
    ] = None,
    min_workers: Annotated[int, typer.Option(help="fewest workers")] = 1,
    max_workers: Annotated[int, typer.Option(help="most workers")] = 2,
    workers: Annotated[int, typer.Option(help="workers to start with")] = 1,
    chunk: Annotated[int, typer.Option(help="bills (fraud: customers) per task")] = 50,
    interval: Annotated[float, typer.Option(help="seconds between checks at most")] = 5.0,
    reports: Annotated[
        str | None, typer.Option(help="database for reports (default: --store)")
    ] = None,
    task_memory: Annotated[
        float | None,
        typer.Option(help="MiB of the workers' trusted memory each task needs (--trusted-memory)"),
    ] = None,
    trusted_memory: TrustedMemory = None,
    detach: Annotated[bool, typer.Option(help="record the job only; run it later")] = False,
    threads: Threads = False,
    metrics_port: MetricsPort = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Submit a job and run it here on a local Dask cluster (--detach: record it only)."""
    if application not in APPLICATIONS:
        raise ConfigurationError(f"no application {application!r}: one of {APPLICATIONS}")
    audit = AuditSpec(
        store,
        str(deployment_dir / "metrology.key.pem"),
        str(deployment_dir / "ca.cert.pem"),
        str(deployment_dir / "billing.pub.pem"),
        passphrase_env,
    )
    control = Control(
        deadline,
        tolerance,
        mode,
        _settings(setting),
        min_workers,
        max_workers,
        interval,
        task_memory,
    )
    boss = _manager(deployment_dir)
    if application == "fraud":
        start, days = _month(month) if month else (first_day, days)
        if start is None or tz is None:
            raise ConfigurationError("fraud needs --month (or --from and --days) and --tz")
        spec = RankSpec(store, start, days, tz, seed, chunk)
        record = boss.submit_fraud(spec, control)
    else:
        if first_day is None:
            raise ConfigurationError("validation needs --from (and --days)")
        period = period_of(first_day, days)
        record = boss.submit_validation(audit, reports, period, chunk, control)
    console.print(f"submitted {record.job_id}", soft_wrap=True)
    if detach:
        console.print(f"run it: meterseal jobs run {record.job_id}", soft_wrap=True)
        return
    _run(boss, record.job_id, workers, threads, metrics_port, trusted_memory)
    console.print(f"its status: meterseal jobs status {record.job_id}", soft_wrap=True)


@jobs_app.command("run")
def run(
    job_id: JobId,
    workers: Annotated[int, typer.Option(help="workers to start with")] = 1,
    threads: Threads = False,
    metrics_port: MetricsPort = None,
    trusted_memory: TrustedMemory = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """Run a submitted job, or resume one a stopped Manager left running."""
    _run(_manager(deployment_dir), job_id, workers, threads, metrics_port, trusted_memory)


@jobs_app.command("status")
def status(job_id: JobId, deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT) -> None:
    """A job's state, progress against its deadline, workers and results."""
    record = _manager(deployment_dir).status(job_id)
    _print(record)
    control = record.spec.get("control", {})
    console.print(
        f"  submitted {_when(record.submitted_at)}, started {_when(record.started_at)}, "
        f"ended {_when(record.ended_at)}; deadline {control.get('deadline')} s, "
        f"mode {control.get('mode')}, tolerance {control.get('tolerance')}",
        soft_wrap=True,
    )


@jobs_app.command("cancel")
def cancel(job_id: JobId, deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT) -> None:
    """Cancel a job; a Manager running it stops its tasks at its next check."""
    record = _manager(deployment_dir).cancel(job_id)
    console.print(f"{record.job_id}: {record.state.value}", soft_wrap=True)


@jobs_app.command("list")
def list_jobs(deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT) -> None:
    """Every job of the deployment, oldest first."""
    records = _manager(deployment_dir).jobs()
    for r in records:
        done = r.status.get("done", 0)
        total = r.status.get("total", "?")
        console.print(
            f"{r.job_id}  {r.application}  {r.state.value}  {done}/{total}  "
            f"submitted {_when(r.submitted_at)}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    console.print(f"{len(records)} jobs; details: meterseal jobs status JOB", soft_wrap=True)
