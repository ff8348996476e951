"""`meterseal jobs …`: batch jobs with deadlines (Asperathos' design) on Dask."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    ClientCerts,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    TlsName,
    console,
    passphrase,
    server_tls,
)
from meterseal.errors import ConfigurationError
from meterseal.jobs.control import Decision
from meterseal.jobs.engine import Engine, local_engine
from meterseal.jobs.manager import Manager
from meterseal.jobs.metrics import DEFAULT_PORT, JobMetrics, serve_metrics
from meterseal.jobs.monitor import Snapshot
from meterseal.jobs.records import JobBook, JobRecord
from meterseal.jobs.submission import Control, Site, Submission, job_view
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
Url = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="MS_JOBS_URL", help="a served Manager (meterseal jobs serve): ask it"
    ),
]
TokenEnv = Annotated[
    str, typer.Option(help="environment variable holding the credential for --url (token/key)")
]
Cas = Annotated[
    str | None,
    typer.Option(
        "--cas",
        help="the CAS each worker attests to for the authority's key (simulated attestation "
        "unless the platform has a TEE)",
    ),
]
CaFile = Annotated[Path | None, typer.Option("--ca", help="CA certificate of an https --url")]
KvsGateway = Annotated[
    str | None, typer.Option("--gateway", help="reencode: the KVS gateway's URL")
]
KvsKeyEnv = Annotated[
    str,
    typer.Option(help="reencode: variable holding the gateway API key (write rights), per worker"),
]
MetricsPort = Annotated[
    int | None,
    typer.Option(help=f"serve the job's metrics on 127.0.0.1:PORT/metrics (e.g. {DEFAULT_PORT})"),
]
Workers = Annotated[int, typer.Option(help="workers to start with")]
Reports = Annotated[str | None, typer.Option(help="database for reports (default: --store)")]


@dataclass(frozen=True)
class LocalRun:
    """How `submit` and `run` run a job here: the local cluster's workers, its metrics."""

    workers: int
    threads: bool
    metrics_port: int | None
    trusted_memory: float | None


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


@contextlib.contextmanager
def _metrics(port: int | None) -> Iterator[JobMetrics]:
    """The jobs' metrics, served on 127.0.0.1:`port` while the block runs (None: not served)."""
    metrics = JobMetrics()
    if port is None:
        yield metrics
        return
    server, bound = serve_metrics(metrics, port)
    console.print(f"metrics: http://127.0.0.1:{bound}/metrics", soft_wrap=True)
    try:
        yield metrics
    finally:
        server.shutdown()
        server.server_close()


def _run(boss: Manager, job_id: str, local: LocalRun) -> JobRecord:
    """Run a job on a local cluster with a progress bar; the record as it ended."""
    record = boss.status(job_id)
    with _metrics(local.metrics_port) as metrics:
        return _run_on(boss, record, local, metrics)


def _run_on(boss: Manager, record: JobRecord, local: LocalRun, metrics: JobMetrics) -> JobRecord:
    job_id = record.job_id
    cas = record.spec.get("audit", {}).get("cas")
    engine_of = local_engine(
        local.workers,
        processes=not local.threads,
        trusted_memory=local.trusted_memory,
        **_attesting(cas, Path(record.spec["audit"]["authority_key"]).parent if cas else None),
    )
    with progress_bar(console) as bar, engine_of as engine:
        if cas:
            _print_attestation(engine, cas)
        task = bar.add_task(f"{job_id} {record.application}", total=None)

        def show(rec: JobRecord, snapshot: Snapshot, decision: Decision | None) -> None:
            metrics.observe(rec.job_id, snapshot, decision)
            seen = snapshot.observation
            bar.update(task, completed=seen.done, total=seen.total)
            if decision is not None and decision.acted:
                bar.console.print(f"controller: {decision.reason} (error {seen.error:+.3f})")

        ended = boss.run(job_id, engine, show)
    _print(job_view(ended), boss.book.directory)
    return ended


def _print_attestation(engine: Engine, cas: str) -> None:
    """What the workers' attestation gave: the backend's assurance, or the CAS's refusal."""
    from collections import Counter

    from meterseal.jobs.attest import JOBS_STAGE, worker_attestation

    counts = Counter(
        ("attested", str(state["assurance"]))
        if state["attested"]
        else ("refused", str(state["refused"]))
        for state in engine.client.run(worker_attestation).values()
    )
    for (verdict, what), count in sorted(counts.items()):
        console.print(
            f"{JOBS_STAGE} attestation to the CAS {cas}: {count} {verdict} ({what})",
            soft_wrap=True,
            highlight=False,
        )


def _attesting(cas: str | None, deployment_dir: Path | None) -> dict[str, Any]:
    """local_engine's options for workers that attest to `cas` (none without a CAS)."""
    if cas is None or deployment_dir is None:
        return {}
    from meterseal.jobs.attest import AttestedKeys

    return {"plugins": (AttestedKeys(cas, deployment_dir),), "attested": True}


def _print(view: dict[str, Any], jobs_dir: Path | None = None) -> None:
    """A job's view (`job_view`): state, results, the Monitor's last figures."""
    status = view["status"]
    console.print(
        f"{view['job_id']} {view['application']}: {view['state']}, "
        f"{view['written']} results written, {view['actuations']} actuations",
        soft_wrap=True,
    )
    if status.get("trusted_capacity"):
        console.print(
            f"  trusted memory {status['trusted_used']:.0f} of {status['trusted_capacity']:.0f}"
            " MiB held",
            soft_wrap=True,
        )
    measured = status.get("trusted_measured_mib") or {}
    if measured:
        each = ", ".join(f"{name} {mib:.0f}" for name, mib in sorted(measured.items()))
        console.print(
            f"  trusted workers' memory, MiB (simulated enclave: the worker process's RSS): {each}",
            soft_wrap=True,
            markup=False,
        )
    if status:
        console.print(
            f"  progress {status['progress']:.1%} (expected {status['expected']:.1%}, "
            f"error {status['error']:+.3f}), {status['done']}/{status['total']} tasks, "
            f"{status['workers']} workers, {status['tasks_per_second']:.2f} tasks/s",
            soft_wrap=True,
        )
    if view["error"]:
        console.print(f"  error: {view['error']}", soft_wrap=True)
    if view["result"]:
        where = view["result"] if jobs_dir is None else str(jobs_dir / view["result"])
        console.print(f"  ranking: {where}", soft_wrap=True)


def _client(url: str, token_env: str, ca: Path | None) -> Any:
    import ssl

    from meterseal.jobs.client import JobsClient

    credential = os.environ.get(token_env, "")
    if not credential:
        raise ConfigurationError(
            f"set {token_env} to a login token or API key of an operator (--url {url})"
        )
    verify: ssl.SSLContext | bool = True
    if ca is not None:
        verify = ssl.create_default_context(cafile=str(ca))
    return JobsClient(url, credential, verify=verify)


@jobs_app.command("submit")
def submit(
    application: Annotated[
        str,
        typer.Argument(
            help="validation (audit every bill), fraud (rank the fleet) or reencode (a KVS "
            "bucket's objects to --policy)"
        ),
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
    bucket: Annotated[str | None, typer.Option(help="reencode: the KVS bucket")] = None,
    prefix: Annotated[str, typer.Option(help="reencode: only keys under this prefix")] = "",
    policy: Annotated[
        str | None, typer.Option(help="reencode: the target policy (rep:N, ec:K+M, hybrid:K+M)")
    ] = None,
    from_kvs: Annotated[
        bool,
        typer.Option(
            "--from-kvs", help="fraud: read the months `kvs export` wrote, through --gateway"
        ),
    ] = False,
    gateway: KvsGateway = None,
    gateway_key_env: KvsKeyEnv = "MS_KVS_KEY",
    deadline: Annotated[float, typer.Option(help="seconds the job may take")] = 3600.0,
    tolerance: Annotated[float, typer.Option(help="lateness (0..1) before actuation")] = 0.0,
    mode: Annotated[str, typer.Option(help="threshold, pid or queue")] = "threshold",
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="controller setting NAME=NUMBER (kp=10)")
    ] = None,
    min_workers: Annotated[int, typer.Option(help="fewest workers")] = 1,
    max_workers: Annotated[int, typer.Option(help="most workers")] = 2,
    workers: Workers = 1,
    chunk: Annotated[int, typer.Option(help="bills (fraud: customers) per task")] = 50,
    interval: Annotated[float, typer.Option(help="seconds between checks at most")] = 5.0,
    reports: Reports = None,
    task_memory: Annotated[
        float | None,
        typer.Option(help="MiB of the workers' trusted memory each task needs (--trusted-memory)"),
    ] = None,
    trusted_memory: TrustedMemory = None,
    detach: Annotated[bool, typer.Option(help="record the job only; run it later")] = False,
    threads: Threads = False,
    metrics_port: MetricsPort = None,
    url: Url = None,
    token_env: TokenEnv = "MS_JOBS_TOKEN",  # noqa: S107 - a variable name
    ca: CaFile = None,
    cas: Cas = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Submit a job and run it here on a local Dask cluster (--detach: record it only).

    With --url, the served Manager at that URL records it and runs it on its own cluster,
    with its own store and key files (--store, --reports and -d are not sent).
    """
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
    asked = Submission(
        application, control, first_day, days, month, tz, seed, chunk, from_kvs, bucket,
        prefix, policy,
    )  # fmt: skip
    if url is not None:
        body = {
            **{k: v for k, v in dataclasses.asdict(asked).items() if k != "control"},
            **{k: v for k, v in control.as_dict().items() if v is not None},
        }
        with _client(url, token_env, ca) as client:
            view = client.submit(body)
        console.print(f"submitted {view['job_id']} to {url}", soft_wrap=True)
        console.print(f"its status: meterseal jobs status {view['job_id']} --url {url}")
        return
    boss = _manager(deployment_dir)
    site = Site(store, deployment_dir, passphrase_env, reports, cas, gateway, gateway_key_env)
    record = boss.submit(asked, site)
    console.print(f"submitted {record.job_id}", soft_wrap=True)
    if detach:
        console.print(f"run it: meterseal jobs run {record.job_id}", soft_wrap=True)
        return
    _run(boss, record.job_id, LocalRun(workers, threads, metrics_port, trusted_memory))
    console.print(f"its status: meterseal jobs status {record.job_id}", soft_wrap=True)


@jobs_app.command("run")
def run(
    job_id: JobId,
    workers: Workers = 1,
    threads: Threads = False,
    metrics_port: MetricsPort = None,
    trusted_memory: TrustedMemory = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """Run a submitted job, or resume one a stopped Manager left running."""
    _run(_manager(deployment_dir), job_id, LocalRun(workers, threads, metrics_port, trusted_memory))


@jobs_app.command("status")
def status(
    job_id: JobId,
    url: Url = None,
    token_env: TokenEnv = "MS_JOBS_TOKEN",  # noqa: S107 - a variable name
    ca: CaFile = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """A job's state, progress against its deadline, workers and results."""
    jobs_dir: Path | None = None
    if url is not None:
        with _client(url, token_env, ca) as client:
            view = client.status(job_id)
    else:
        boss = _manager(deployment_dir)
        view, jobs_dir = job_view(boss.status(job_id)), boss.book.directory
    _print(view, jobs_dir)
    control = view["control"]
    console.print(
        f"  submitted {_when(view['submitted_at'])}, started {_when(view['started_at'])}, "
        f"ended {_when(view['ended_at'])}; deadline {control.get('deadline')} s, "
        f"mode {control.get('mode')}, tolerance {control.get('tolerance')}",
        soft_wrap=True,
    )


@jobs_app.command("cancel")
def cancel(
    job_id: JobId,
    url: Url = None,
    token_env: TokenEnv = "MS_JOBS_TOKEN",  # noqa: S107 - a variable name
    ca: CaFile = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """Cancel a job; a Manager running it stops its tasks at its next check."""
    if url is not None:
        with _client(url, token_env, ca) as client:
            view = client.cancel(job_id)
    else:
        view = job_view(_manager(deployment_dir).cancel(job_id))
    console.print(f"{view['job_id']}: {view['state']}", soft_wrap=True)


@jobs_app.command("list")
def list_jobs(
    url: Url = None,
    token_env: TokenEnv = "MS_JOBS_TOKEN",  # noqa: S107 - a variable name
    ca: CaFile = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """Every job of the deployment (or of the Manager at --url), oldest first."""
    if url is not None:
        with _client(url, token_env, ca) as client:
            views = client.jobs()
    else:
        views = [job_view(r) for r in _manager(deployment_dir).jobs()]
    for v in views:
        done = v["status"].get("done", 0)
        total = v["status"].get("total", "?")
        console.print(
            f"{v['job_id']}  {v['application']}  {v['state']}  {done}/{total}  "
            f"submitted {_when(v['submitted_at'])}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    console.print(f"{len(views)} jobs; details: meterseal jobs status JOB", soft_wrap=True)


@jobs_app.command("serve")
def serve(
    listen: Annotated[str, typer.Option(help="HTTP listen address host:port")] = "127.0.0.1:7476",
    workers: Annotated[int, typer.Option(help="workers the cluster starts with")] = 1,
    threads: Threads = False,
    trusted_memory: TrustedMemory = None,
    metrics_port: MetricsPort = None,
    tls: TlsName = None,
    client_certs: ClientCerts = "optional",
    admin: Annotated[
        str, typer.Option(help="admin endpoint host:port (health, readiness, metrics) or off")
    ] = "127.0.0.1:0",
    reports: Reports = None,
    cas: Cas = None,
    gateway: KvsGateway = None,
    gateway_key_env: KvsKeyEnv = "MS_KVS_KEY",
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Serve the Manager's API (/v1/jobs) and run its jobs on a local Dask cluster.

    Callers sign in with accounts (`meterseal accounts add`, operators and administrators
    submit and cancel, auditors read). Jobs run one at a time, oldest first; a job a stopped
    Manager left running is resumed first. Until SIGINT or SIGTERM; a job halted then stays
    running, for the next `serve` (or `meterseal jobs run`) to resume.
    """
    import asyncio
    import functools

    from meterseal.accounts.authn import AccountAuthenticator
    from meterseal.accounts.credentials import TokenSigner, token_key
    from meterseal.jobs.http_api import create_jobs_app
    from meterseal.jobs.service import JobRunner, JobsStage
    from meterseal.runtime.address import parse_address
    from meterseal.runtime.http import HttpAppService
    from meterseal.runtime.lifecycle import serve_stage
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    # Refused before anything opens. 7476, not the CAS's 7490: both serve one deployment.
    address = str(parse_address(listen, 7476))
    context = server_tls(deployment_dir, tls, client_certs, passphrase_env)
    site = Site(store, deployment_dir, passphrase_env, reports, cas, gateway, gateway_key_env)
    if cas:  # AttestedKeys quotes with the deployment's simulated platform key
        from meterseal.jobs.attest import JOBS_STAGE
        from meterseal.trust.attestation import NO_HARDWARE

        console.print(
            f"jobs' workers attest to the CAS {cas} as {JOBS_STAGE} ({NO_HARDWARE})",
            soft_wrap=True,
            highlight=False,
        )
    with _metrics(metrics_port) as metrics:
        boss = _manager(deployment_dir)
        engine = functools.partial(
            local_engine,
            workers,
            processes=not threads,
            trusted_memory=trusted_memory,
            **_attesting(cas, deployment_dir),
        )
        runner = JobRunner(boss, engine, metrics)
        try:
            with Store.open(store) as accounts:
                signer = TokenSigner(token_key(deployment_dir, passphrase(passphrase_env)))
                authenticator = AccountAuthenticator(AccountStore(accounts), signer)
                app = create_jobs_app(boss, site, authenticator, runner.wake)
                http = HttpAppService("jobs", app, address, 7476, context)
                stage = JobsStage(http, runner)
                asyncio.run(serve_stage(stage, admin=None if admin == "off" else admin))
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {listen}: {exc}") from exc
