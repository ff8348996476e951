"""A job as a user asks for it and as a caller sees it: its input, deadline and controller.

`Submission` and `Control` are what `meterseal jobs submit` and `POST /v1/jobs` send the
Manager; `Site` is where the Manager's jobs read and write (never a caller's to name);
`job_view` is a record as its callers see it, without the site's URLs and paths.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterseal.billing.completeness import Period
from meterseal.errors import ConfigurationError
from meterseal.jobs.control import Controller, Limits, controller
from meterseal.jobs.records import JobRecord
from meterseal.jobs.validation import AuditSpec

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


def job_controller(settings: dict[str, Any]) -> Controller:
    """The controller a job's settings name (a ConfigurationError if they are wrong)."""
    return controller(
        settings["mode"],
        tolerance=settings["tolerance"],
        limits=Limits(settings["min_workers"], settings["max_workers"]),
        **(settings["settings"] or {}),
    )


def month_of(month: str) -> tuple[str, int]:
    """The first day and the day count of YYYY-MM."""
    try:
        first = dt.date.fromisoformat(f"{month}-01")
    except ValueError:
        raise ConfigurationError(f"--month {month!r}: need YYYY-MM") from None
    return first.isoformat(), calendar.monthrange(first.year, first.month)[1]


def period_of(first_day: str, days: int) -> Period:
    """The billing period of `days` UTC days from `first_day` (YYYY-MM-DD)."""
    try:
        return Period.days(dt.date.fromisoformat(first_day), days)
    except ValueError as exc:
        raise ConfigurationError(f"--from {first_day!r}: {exc}") from exc


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
