"""The Manager over the runtime's authenticated HTTP API: submit, list, status, cancel.

`POST /v1/jobs` records a job (validation, fraud ranking, KVS policy re-encode), which the
served Manager's runner takes at once; `GET /v1/jobs` lists them oldest first;
`GET /v1/jobs/{id}` is one job with the Monitor's last figures (progress, expected
progress, error, workers, queue, tasks per second, trusted memory);
`POST /v1/jobs/{id}/cancel` cancels it (its tasks stop at the run's next check). Operators
and administrators submit and cancel; auditors may also read. The store and the key files
a job uses are the served Manager's own (`Site`): a caller names the application, its input
and the controller settings, never a path or a database URL. A caller signs in at
`POST /v1/auth/token` (or sends an account's API key).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path
from pydantic import BaseModel, Field

from meterseal.accounts.api import add_account_routes
from meterseal.accounts.authn import AccountAuthenticator
from meterseal.errors import ConfigurationError
from meterseal.jobs.lifecycle import JobRefused, JobStateError
from meterseal.jobs.manager import Manager
from meterseal.jobs.records import JOB_ID_PATTERN, UnknownJob
from meterseal.jobs.submission import Control, Site, Submission, job_view
from meterseal.runtime.auth import AnyRole, access
from meterseal.runtime.http import Problem, service_app
from meterseal.runtime.refusals import Refusal, answer_store_unavailable, refusing

log = logging.getLogger(__name__)
RUNS_JOBS = AnyRole(("operator", "administrator"))
READS_JOBS = AnyRole(("operator", "administrator", "auditor"))
JOB_ID = Annotated[str, Path(pattern=JOB_ID_PATTERN)]
REFUSED: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No job has this id."},
    409: {"model": Problem, "description": "The job's state refuses it (cancel a finished job)."},
}
SUBMIT_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "The new job's id is already recorded: submit again."},
}
JOB_REFUSALS = (
    Refusal(UnknownJob, 404),
    Refusal(JobRefused, 409, "refused"),
    # The table refuses a submission under an id already recorded (ids are 64 random bits,
    # so next to never): a conflict of state, the record stays, and a new submission gets a
    # new id. No route drives the Manager's other moves, so nothing else of it arrives here.
    Refusal(JobStateError, 409, "conflict"),
    Refusal(ConfigurationError, 422, "refused"),
)


class JobAsked(BaseModel):
    """A job submission: the application, its input, and the deadline and controller."""

    application: Literal["validation", "fraud", "reencode"]
    first_day: str | None = Field(None, description="the period's first day, YYYY-MM-DD")
    days: int = Field(30, ge=1, le=366)
    month: str | None = Field(None, description="fraud: the fleet-month YYYY-MM")
    tz: str | None = Field(None, max_length=64, description="fraud: the meters' IANA zone")
    seed: int = 1
    chunk: int = Field(
        50, ge=1, le=100_000, description="bills (fraud: customers; reencode: objects) per task"
    )
    from_kvs: bool = Field(False, description="fraud: read the KVS export (the server's gateway)")
    bucket: str | None = Field(None, max_length=64, description="reencode: the KVS bucket")
    prefix: str = Field("", max_length=1024, description="reencode: only keys under it")
    policy: str | None = Field(None, max_length=32, description="reencode: rep:N, ec:K+M, …")
    deadline: float = Field(3600.0, gt=0, description="seconds the job may take")
    tolerance: float = Field(0.0, ge=0, lt=1, description="lateness before actuation")
    mode: Literal["threshold", "pid", "queue"] = "threshold"
    settings: dict[str, float] = Field(default_factory=dict, max_length=16)
    min_workers: int = Field(1, ge=0, le=1024)
    max_workers: int = Field(2, ge=0, le=1024)
    interval: float = Field(5.0, gt=0, le=3600)
    task_memory: float | None = Field(None, gt=0, description="MiB of trusted memory a task needs")

    def submission(self) -> Submission:
        """The Manager's submission."""
        control = Control(
            self.deadline,
            self.tolerance,
            self.mode,
            dict(self.settings),
            self.min_workers,
            self.max_workers,
            self.interval,
            self.task_memory,
        )
        return Submission(
            self.application,
            control,
            self.first_day,
            self.days,
            self.month,
            self.tz,
            self.seed,
            self.chunk,
            self.from_kvs,
            self.bucket,
            self.prefix,
            self.policy,
        )


class JobView(BaseModel):
    """A job: its state, the Monitor's last figures, its control settings and input."""

    job_id: str
    application: str
    state: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    written: int = Field(description="results written (reports; ranked customers)")
    actuations: int
    error: str | None
    status: dict[str, Any] = Field(description="the Monitor's last check")
    control: dict[str, Any]
    input: dict[str, Any]
    result: str | None = Field(description="fraud: the ranking CSV's name in the jobs dir")


class JobList(BaseModel):
    """Every job, oldest submission first."""

    jobs: list[JobView]


def create_jobs_app(
    manager: Manager,
    site: Site,
    authenticator: AccountAuthenticator,
    on_submit: Callable[[], None] = lambda: None,
) -> FastAPI:
    """The Manager's API over `manager`'s records; `on_submit` wakes its runner."""
    counts: Counter[str] = Counter()
    app = service_app(
        "meterseal jobs",
        "Batch jobs with deadlines (data validation, fraud ranking) on Dask. Sign in with an "
        "account; send `Authorization: Bearer TOKEN`.",
        counts,
        lambda: dict(counts),
    )
    add_account_routes(app, authenticator, None)  # sign-in: POST /v1/auth/token
    # The served Manager's own store (a job's input) cannot be read: its URL is not the caller's.
    answer_store_unavailable(app, counts, log)

    async def call(what: Callable[[], Any]) -> Any:
        return await refusing(what, JOB_REFUSALS, counts)

    @app.post(
        "/v1/jobs",
        summary="Submit a job",
        status_code=201,
        dependencies=[access(RUNS_JOBS)],
        responses=SUBMIT_REFUSED,
    )
    async def submit(asked: JobAsked) -> JobView:
        record = await call(lambda: manager.submit(asked.submission(), site))
        counts["submitted"] += 1
        on_submit()
        return JobView(**job_view(record))

    @app.get("/v1/jobs", summary="List jobs", dependencies=[access(READS_JOBS)])
    async def list_jobs() -> JobList:
        records = await call(manager.jobs)
        return JobList(jobs=[JobView(**job_view(r)) for r in records])

    @app.get(
        "/v1/jobs/{job_id}",
        summary="A job's status",
        dependencies=[access(READS_JOBS)],
        responses=REFUSED,
    )
    async def status(job_id: JOB_ID) -> JobView:
        return JobView(**job_view(await call(lambda: manager.status(job_id))))

    @app.post(
        "/v1/jobs/{job_id}/cancel",
        summary="Cancel a job",
        dependencies=[access(RUNS_JOBS)],
        responses=REFUSED,
    )
    async def cancel(job_id: JOB_ID) -> JobView:
        record = await call(lambda: manager.cancel(job_id))
        counts["cancelled"] += 1
        return JobView(**job_view(record))

    return app
