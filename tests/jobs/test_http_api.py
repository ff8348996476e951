"""The served Manager: its HTTP API (who may call what) and `meterseal jobs … --url`."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from meterseal.accounts.model import Role
from meterseal.jobs.engine import local_engine
from meterseal.jobs.http_api import create_jobs_app
from meterseal.jobs.lifecycle import JobState
from meterseal.jobs.manager import Manager, new_job_id
from meterseal.jobs.records import JobBook
from meterseal.jobs.service import JobRunner
from meterseal.jobs.submission import Site
from meterseal.runtime.http import ThreadedServer
from tests.accounts.people import MemoryAccounts, People
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run
from tests.command_line import invoke
from tests.jobs.test_cli import FIRST, kept

VALIDATION = {"application": "validation", "first_day": FIRST, "days": 1, "chunk": 1}


@dataclass
class Served:
    """A Manager served on port 0 over a deployment on disk, its runner and its people."""

    url: str
    people: People
    runner: JobRunner
    deployment: Path
    store: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """Two billed meters' day, the Manager's API, and a runner not started yet."""
    deployment, store, _ = month_on_disk(tmp_path, 2)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-tou")
    people = People(MemoryAccounts())
    for name, role in [("olga", Role.OPERATOR), ("ada", Role.AUDITOR)]:
        people.add(name, role)
    people.add("carl", Role.CUSTOMER, customer_id="c-1")
    boss = Manager(JobBook(deployment / "jobs"))
    runner = JobRunner(boss, functools.partial(local_engine, 1, processes=False), poll=0.2)
    reports = f"sqlite:///{tmp_path / 'spread.db'}"
    site = Site(store, deployment, reports=reports)
    app = create_jobs_app(boss, site, people.authenticator, runner.wake)
    with ThreadedServer(app) as url:
        yield Served(url, people, runner, deployment, store)
    runner.stop()


def test_unauthorised_callers_are_refused(served: Served) -> None:
    routes = [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/job-1"),
              ("POST", "/v1/jobs/job-1/cancel")]  # fmt: skip
    with httpx.Client(base_url=served.url) as client:
        for method, path in routes:
            body = VALIDATION if path == "/v1/jobs" else None
            assert client.request(method, path, json=body).status_code == 401, path
            customer = served.people.headers("carl")
            assert client.request(method, path, json=body, headers=customer).status_code == 403
        auditor = served.people.headers("ada")
        assert client.post("/v1/jobs", json=VALIDATION, headers=auditor).status_code == 403
        assert client.get("/v1/jobs", headers=auditor).json() == {"jobs": []}
        wrong = {"Authorization": "Bearer not-a-token"}
        assert client.get("/v1/jobs", headers=wrong).status_code == 401
        operator = served.people.headers("olga")
        assert client.get("/v1/jobs/job-none", headers=operator).status_code == 404
        assert client.get("/v1/jobs/..%2Fx", headers=operator).status_code in (404, 422)
        # a caller names no store, no path: an unknown field is ignored, a bad one refused
        refused = client.post("/v1/jobs", json={**VALIDATION, "mode": "guess"}, headers=operator)
        assert refused.status_code == 422
        missing = {k: v for k, v in VALIDATION.items() if k != "first_day"}
        answer = client.post("/v1/jobs", json=missing, headers=operator)
        assert (answer.status_code, answer.json()["detail"]) == (
            422,
            "validation needs --from (and --days)",
        )


def _until(what: str, check: str, *args: str) -> str:
    """`meterseal ARGS` until its output holds `check` (a bounded wait, not a timing)."""
    for _ in range(600):
        out = run(*args)
        if check in out:
            return out
        time.sleep(0.1)
    raise AssertionError(f"{what}: never {check!r}: {out}")


def test_the_command_line_submits_to_a_served_manager_which_runs_the_job(
    served: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = ["--url", served.url]
    assert "MS_JOBS_TOKEN" in run("jobs", "list", *url, code=2)
    monkeypatch.setenv("MS_JOBS_TOKEN", served.people.token("olga"))
    out = run(
        "jobs", "submit", "validation", "--from", FIRST, "--days", "1", "--chunk", "1",
        "--tolerance", "0.05", *url,
    )  # fmt: skip
    job = re.search(r"submitted (job-\w+) to", out)
    assert job is not None, out
    served.runner.start()
    shown = _until("the job", "succeeded", "jobs", "status", job[1], *url)
    assert f"{job[1]} validation: succeeded, 2 results written" in shown
    assert "progress 100.0%" in shown
    assert "2/2 tasks" in shown
    assert "tolerance 0.05" in shown
    assert f"{job[1]} validation succeeded 2/2" in run("jobs", "list", *url)
    refused = run("jobs", "cancel", job[1], *url, code=2)
    assert "HTTP 409: job cannot cancel when succeeded" in refused
    # the served Manager's reports are `meterseal audit`'s
    alone = f"sqlite:///{tmp_path / 'alone.db'}"
    run("audit", "--store", served.store, "--reports", alone, "-d", str(served.deployment))
    assert kept(f"sqlite:///{tmp_path / 'spread.db'}") == kept(alone)
    # the same record, read locally
    assert "succeeded" in run("jobs", "status", job[1], "-d", str(served.deployment))

    monkeypatch.setenv("MS_JOBS_TOKEN", served.people.token("ada"))
    assert "HTTP 403" in run("jobs", "cancel", job[1], *url, code=2)
    assert served.runner.ran == [job[1]]


def test_a_halted_runner_leaves_its_job_running_for_the_next_manager(served: Served) -> None:
    boss = served.runner.manager
    with httpx.Client(base_url=served.url, headers=served.people.headers("olga")) as client:
        made = client.post("/v1/jobs", json={**VALIDATION, "interval": 0.05}).json()
    job_id = made["job_id"]
    assert made["state"] == "submitted"
    assert made["input"]["chunk"] == 1
    assert "store" not in str(made)
    assert "pem" not in str(made)
    served.runner._stop.set()  # halted before its first check: as a Manager stopping
    engine = local_engine(1, processes=False)
    with engine as running:
        halted = boss.run(job_id, running, halt=lambda: True)
    assert halted.state is JobState.RUNNING
    later = JobRunner(boss, functools.partial(local_engine, 1, processes=False), poll=0.2)
    later.start()
    try:
        for _ in range(600):
            if boss.status(job_id).state is JobState.SUCCEEDED:
                break
            time.sleep(0.1)
    finally:
        later.stop()
    assert later.ran == [job_id]
    assert boss.status(job_id).state is JobState.SUCCEEDED


def test_jobs_serve_answers_signed_in_callers_until_sigterm(tmp_path: Path) -> None:
    deployment, store = tmp_path / "dep", f"sqlite:///{tmp_path / 'store.db'}"
    run("keys", "init", str(deployment))
    password = {"MS_ACCOUNT_PASSWORD": "a long enough password"}
    added = invoke(
        ["accounts", "add", "olga", "--role", "operator", "--store", store], env=password
    )
    assert added.exit_code == 0, added.output
    command = [sys.executable, "-m", "meterseal", "jobs", "serve", "--listen", "127.0.0.1:0",
               "--threads", "--admin", "off", "--store", store, "-d", str(deployment),
               "--cas", "http://127.0.0.1:9"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # no hardware here: the backend is named
            assert line.strip() == (
                "jobs' workers attest to the CAS http://127.0.0.1:9 as jobs-worker "
                "(simulated: no hardware guarantee)"
            ), line
            line = process.stdout.readline()
            assert line.startswith("listening jobs http://127.0.0.1:"), line
            url = line.split()[-1]
            assert httpx.get(f"{url}/v1/jobs", timeout=10).status_code == 401
            login = {"username": "olga", "password": password["MS_ACCOUNT_PASSWORD"]}
            signed_in = httpx.post(f"{url}/v1/auth/token", json=login, timeout=10)
            token = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
            assert httpx.get(f"{url}/v1/jobs", headers=token, timeout=10).json() == {"jobs": []}
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_the_api_answers_as_its_openapi_says(tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    from tests.openapi_check import conforms

    people = People(MemoryAccounts())
    people.add("olga", Role.OPERATOR)
    site = Site(f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "deployment")
    app = create_jobs_app(Manager(JobBook(tmp_path / "jobs")), site, people.authenticator)
    assert conforms(app) == []
    assert conforms(app, people.headers("olga")) == []


def test_a_served_manager_whose_store_is_missing_refuses_a_submission_with_503(
    tmp_path: Path,
) -> None:
    # Its record was written, to fail once run; the store's path is not the caller's to see.
    people = People(MemoryAccounts())
    people.add("olga", Role.OPERATOR)
    missing = tmp_path / "missing.db"
    boss = Manager(JobBook(tmp_path / "jobs"))
    app = create_jobs_app(boss, Site(f"sqlite:///{missing}", tmp_path), people.authenticator)
    with ThreadedServer(app) as url, httpx.Client(base_url=url) as client:
        answer = client.post("/v1/jobs", json=VALIDATION, headers=people.headers("olga"))
        assert (answer.status_code, answer.json()) == (
            503,
            {"detail": "the store is unavailable; retry later"},
        )
        assert answer.headers["Retry-After"] == "5"
        assert client.get("/v1/counters").json()["store_unavailable"] == 1
    assert boss.jobs() == []
    assert not missing.exists()


def test_a_submission_whose_new_id_is_already_recorded_is_a_409_conflict(tmp_path: Path) -> None:
    # The table's refusal (JobStateError) was answered 500, as a server fault. Ids drawn
    # twice are next to never (64 bits), so a Manager whose ids repeat makes one here.
    people = People(MemoryAccounts())
    people.add("olga", Role.OPERATOR)
    ids = iter(["job-1a2b3c4d", "job-1a2b3c4d", new_job_id()])
    boss = Manager(JobBook(tmp_path / "jobs"), new_id=lambda: next(ids))
    site = Site(f"sqlite:///{tmp_path / 'unread.db'}", tmp_path, gateway="http://127.0.0.1:1")
    fraud = {"application": "fraud", "month": "2026-11", "tz": "UTC", "from_kvs": True}
    app = create_jobs_app(boss, site, people.authenticator)
    operator = people.headers("olga")
    with ThreadedServer(app) as url, httpx.Client(base_url=url, headers=operator) as client:
        assert client.post("/v1/jobs", json=fraud).status_code == 201
        again = client.post("/v1/jobs", json={**fraud, "seed": 2})
        assert again.status_code == 409, again.text
        assert "job cannot submit when submitted" in again.json()["detail"]
        third = client.post("/v1/jobs", json={**fraud, "seed": 3}).json()["job_id"]
        assert re.fullmatch(r"job-[0-9a-f]{16}", third)
        for job_id in ("job-1a2b3c4d", third):  # an older 8-digit id and a new one both read
            assert client.get(f"/v1/jobs/{job_id}").json()["job_id"] == job_id
        assert client.get("/v1/counters").json()["conflict"] == 1
    kept = boss.status("job-1a2b3c4d")
    assert kept.spec["rank"]["seed"] == 1
