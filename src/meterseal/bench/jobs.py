"""`meterseal bench jobs`: the paper's deadline experiment on the validation job, on Dask.

A fresh store of `customers` simulated Ed25519 meters (a day of signed readings each, by
default), billed; the same validation job then runs (1) on 1 and on 2 fixed workers: bills
audited per second and the per-worker efficiency; (2) under a deadline the single worker
misses (a share of its own time), with Asperathos' threshold mode at tolerances 0, 5 and 10 %:
actuations and lateness per run; (3) with KEDA-style queue-length scaling on the same
deadline: met or missed and the worker-seconds spent. Workers are local processes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console

from meterseal.bench.months import store_months
from meterseal.billing.completeness import Period
from meterseal.billing.service import BillingService
from meterseal.billing.tariff import builtin_tariffs
from meterseal.crypto import certs
from meterseal.crypto.keys import write_private_key
from meterseal.crypto.suites import ED25519
from meterseal.jobs.control import Decision
from meterseal.jobs.engine import local_engine
from meterseal.jobs.manager import Manager
from meterseal.jobs.monitor import Snapshot
from meterseal.jobs.records import JobBook, JobRecord
from meterseal.jobs.submission import Control
from meterseal.jobs.validation import AuditSpec
from meterseal.meter.provisioning import fleet_records, provision
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from meterseal.ui import TextTable, Verdict

TOLERANCES = (0.0, 0.05, 0.10)
PASSPHRASE_ENV = "MS_BENCH_JOBS_PASSPHRASE"  # noqa: S105 - a variable name
MONTH_AUDIT_SECONDS = 0.160  # one core, a 30-day bill (docs/benchmarks.md, bench billing)


@dataclass
class JobRun:
    """One run of the validation job: its settings, duration, actuations and trace."""

    label: str
    mode: str
    tolerance: float
    deadline: float | None
    seconds: float
    actuations: int
    worker_seconds: float
    bills: int
    trace: list[tuple[float, float, float, int]] = field(default_factory=list)

    @property
    def late(self) -> float:
        """Seconds past the deadline (0 when met)."""
        return 0.0 if self.deadline is None else max(0.0, self.seconds - self.deadline)


@dataclass
class JobsBench:
    """The runs of one `bench jobs`."""

    customers: int
    days: int
    chunk: int
    fixed: list[JobRun]
    deadline_runs: list[JobRun]


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="meterseal-bench-jobs-") as name:
        yield Path(name)


def prepare(where: Path, customers: int, days: int) -> tuple[AuditSpec, Period]:
    """A billed store of `customers` meters and the key files of its audit."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    first = (now - dt.timedelta(days=days + 1)).date()
    period = Period.days(first, days)
    ca_key, ca_cert = certs.create_ca("bench jobs CA", now=now, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, customers, ED25519, now=now, prefix="JOB", workers=1)
    url = f"sqlite:///{where / 'store.db'}"
    billing = ec.generate_private_key(ec.SECP256R1())
    authority = ec.generate_private_key(ec.SECP256R1())
    with Store.open(url) as store:
        store.register_meters(fleet_records(ca_cert, fleet), now=now)
        store_months(
            store, fleet, period.start, period.slots, now=now, anonymization_key=b"b" * 32,
            workers=1,
        )  # fmt: skip
        bills = BillStore(store)
        tariff = builtin_tariffs().latest("example-tou")
        bills.add_tariff(tariff, now=now)
        service = BillingService(bills, billing, clock=lambda: now.timestamp())
        for customer, meters in bills.customers().items():
            service.bill_customer(customer, meters, period, tariff)
    # Encrypted at rest as a deployment keeps it; the workers (child processes) inherit the
    # variable that holds this run's passphrase.
    os.environ[PASSPHRASE_ENV] = secrets.token_hex(16)
    write_private_key(where / "metrology.key.pem", authority, os.environ[PASSPHRASE_ENV].encode())
    (where / "ca.cert.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (where / "billing.pub.pem").write_bytes(
        billing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    spec = AuditSpec(
        url,
        str(where / "metrology.key.pem"),
        str(where / "ca.cert.pem"),
        str(where / "billing.pub.pem"),
        PASSPHRASE_ENV,
    )
    return spec, period


def run_job(
    where: Path,
    spec: AuditSpec,
    period: Period,
    chunk: int,
    label: str,
    control: Control,
    processes: bool = True,
) -> JobRun:
    """Run the validation job once, on a fresh reports database; what it did."""
    runs = where / label
    runs.mkdir()
    boss = Manager(JobBook(runs / "jobs"), clock=time.monotonic)
    record = boss.submit_validation(
        spec, f"sqlite:///{runs / 'reports.db'}", period, chunk, control
    )
    trace: list[tuple[float, float, float, int]] = []

    def seen(_: JobRecord, snapshot: Snapshot, __: Decision | None) -> None:
        o = snapshot.observation
        trace.append((o.elapsed, o.progress, o.expected, o.workers))

    with local_engine(control.min_workers, processes=processes) as engine:
        engine.client.wait_for_workers(control.min_workers)
        ended = boss.run(record.job_id, engine, seen)
    seconds = (ended.ended_at or 0.0) - (ended.started_at or 0.0)
    spent, last = 0.0, 0.0
    for elapsed, _, _, workers in trace:
        spent += workers * (elapsed - last)
        last = elapsed
    deadline = control.deadline if control.deadline < 1e8 else None
    return JobRun(
        label, control.mode, control.tolerance, deadline, seconds, ended.actuations, spent,
        ended.written, trace,
    )  # fmt: skip


def run_jobs_bench(
    console: Console,
    *,
    customers: int,
    days: int,
    chunk: int,
    share: float,
    interval: float,
    processes: bool = True,
) -> JobsBench:
    """Prepare the store, then the fixed-worker, threshold and queue runs."""
    with _workdir() as where:
        with console.status(f"billing {customers} simulated meters ({days} days)"):
            spec, period = prepare(where, customers, days)
        free = 1e9  # no deadline: fixed workers
        fixed = []
        for n in (1, 2):
            console.print(f"validation job on {n} fixed worker(s)")
            control = Control(free, 0.0, "threshold", None, n, n, interval)
            fixed.append(run_job(where, spec, period, chunk, f"fixed-{n}", control, processes))
        deadline = max(1.0, share * fixed[0].seconds)
        runs = []
        for tolerance in TOLERANCES:
            console.print(f"threshold mode, tolerance {tolerance:.0%}, deadline {deadline:.1f} s")
            settings = {"down": 0.2}  # up: the tolerance alone; down: only well ahead
            control = Control(deadline, tolerance, "threshold", settings, 1, 2, interval)
            runs.append(run_job(where, spec, period, chunk, f"tol-{tolerance}", control, processes))
        console.print(f"queue mode (KEDA), deadline {deadline:.1f} s")
        queue = Control(deadline, 0.0, "queue", {"tasks_per_worker": 2}, 1, 2, interval)
        runs.append(run_job(where, spec, period, chunk, "queue", queue, processes))
    return JobsBench(customers, days, chunk, fixed, runs)


def throughput_table(bench: JobsBench) -> TextTable:
    """Bills audited per second on 1 and 2 workers, and what a million-customer month needs."""
    one, two = (r.bills / r.seconds if r.seconds > 0 else 0.0 for r in bench.fixed)
    efficiency = two / (2 * one) if one else 0.0
    per_bill = 1 / one if one else 0.0
    month = MONTH_AUDIT_SECONDS * 1_000_000 / 3600
    rows = [
        (f"{n}", f"{r.bills}", f"{r.seconds:.2f}", f"{r.bills / r.seconds:.1f}")
        for n, r in zip((1, 2), bench.fixed, strict=True)
    ]
    return TextTable(
        f"Validation job: bills audited per second ({bench.customers} bills of "
        f"{bench.days} day(s), chunks of {bench.chunk}, local worker processes)",
        ("workers", "bills", "seconds", "bills/s"),
        rows,
        notes=(
            f"per-worker efficiency at 2 workers: {efficiency:.0%} (2 cores shared with other "
            "processes on this machine)",
            f"measured {per_bill * 1e3:.1f} ms per {bench.days}-day bill per worker",
            f"model: a 1,000,000-customer month at {MONTH_AUDIT_SECONDS * 1e3:.0f} ms per 30-day "
            f"bill is {month:,.0f} worker-hours: {month / 24:,.1f} days on one worker, "
            f"{month / 100:,.1f} hours on 100 workers at full efficiency",
        ),
        verdict=Verdict("2 workers audit faster than 1", two > one),
    )


def deadline_table(bench: JobsBench) -> TextTable:
    """Each deadline run: mode, tolerance, actuations, lateness, worker-seconds."""
    rows = [
        (
            r.label, r.mode, f"{r.tolerance:.0%}", f"{r.deadline or 0:.1f}", f"{r.seconds:.1f}",
            f"{r.late:.1f}", str(r.actuations), f"{r.worker_seconds:.1f}",
            "met" if r.late == 0 else "missed",
        )
        for r in bench.deadline_runs
    ]  # fmt: skip
    threshold = [r for r in bench.deadline_runs if r.mode == "threshold"]
    fewer = all(a.actuations >= b.actuations for a, b in itertools.pairwise(threshold))
    return TextTable(
        "Deadline experiment: the validation job with a deadline one fixed worker misses",
        (
            "run",
            "mode",
            "tolerance",
            "deadline s",
            "took s",
            "late s",
            "actuations",
            "worker-s",
            "deadline",
        ),
        rows,
        notes=(
            "deadline: a share of the 1-worker run's time; workers 1..2 (local processes); "
            "threshold mode: up = the tolerance, down = 20 % ahead; "
            "the queue run scales on chunks waiting (2 per worker), not on the deadline",
        ),
        verdict=Verdict("less tolerance, no fewer actuations (the paper's Fig. 11)", fewer),
    )


def plot_jobs(bench: JobsBench, path: Path) -> Path:
    """Progress against expected progress and the workers of each deadline run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for run in bench.deadline_runs:
        times = [t for t, *_ in run.trace]
        top.plot(times, [p for _, p, _, _ in run.trace], label=f"{run.label} progress")
        bottom.step(times, [w for *_, w in run.trace], where="post", label=run.label)
    if bench.deadline_runs and bench.deadline_runs[0].deadline:
        deadline = bench.deadline_runs[0].deadline
        top.plot([0, deadline], [0, 1], "k--", linewidth=1, label="expected")
    top.set_ylabel("progress")
    top.legend(fontsize=8)
    bottom.set_ylabel("workers")
    bottom.set_xlabel("seconds since the start")
    bottom.legend(fontsize=8)
    fig.suptitle("bench jobs: validation job under a deadline (tolerance 0, 5, 10 %, queue)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
