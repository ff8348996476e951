"""The fraud ranking job of `meterseal jobs` writes the CSV `meterseal fraud rank` writes."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from meterseal.bench.months import store_months
from meterseal.crypto import certs
from meterseal.crypto.suites import ED25519
from meterseal.jobs.lifecycle import JobEvent, JobState, step
from meterseal.jobs.records import JobBook
from meterseal.meter.provisioning import fleet_records, provision
from meterseal.storage import Store
from tests.billing.on_disk import run
from tests.conftest import NOW

MONTH, FIRST, DAYS = "2026-02", dt.date(2026, 2, 1), 28


def fleet_month(directory: Path) -> str:
    """A store with February's signed readings of five simulated meters (five customers)."""
    url = f"sqlite:///{directory / 'fleet.db'}"
    ca_key, ca_cert = certs.create_ca("fraud job test CA", now=NOW, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, 5, ED25519, now=NOW, prefix="FJB", workers=1)
    with Store.open(url) as store:
        store.register_meters(fleet_records(ca_cert, fleet), now=NOW)
        start = (FIRST - dt.date(1970, 1, 1)).days * 86_400
        store_months(
            store, fleet, start, DAYS * 96, now=NOW, anonymization_key=b"k" * 32, workers=1
        )
    return url


def test_the_fraud_job_ranks_as_fraud_rank_does_and_resumes(tmp_path: Path) -> None:
    store = fleet_month(tmp_path)
    d = ["-d", str(tmp_path / "dep")]
    alone = tmp_path / "alone.csv"
    run(
        "fraud", "rank", "--store", store, "--from", FIRST.isoformat(), "--days", str(DAYS),
        "--tz", "UTC", "--out", str(alone),
    )  # fmt: skip
    assert len(alone.read_text().splitlines()) == 1 + 5

    out = run(
        "jobs", "submit", "fraud", "--month", MONTH, "--tz", "UTC", "--threads", "--chunk", "2",
        "--store", store, *d,
    )  # fmt: skip
    job = re.search(r"submitted (job-\w+)", out)
    assert job is not None, out
    assert f"{job[1]} fraud: succeeded, 5 results written" in out
    ranking = re.search(r"ranking: (\S+)", out)
    assert ranking is not None, out
    assert Path(ranking[1]).read_bytes() == alone.read_bytes()
    shown = run("jobs", "status", job[1], *d)
    assert "progress 100.0%" in shown
    assert f"ranking: {ranking[1]}" in shown

    # A Manager that stopped mid-job left it running: `jobs run` ranks it again, whole.
    later = run(
        "jobs", "submit", "fraud", "--month", MONTH, "--tz", "UTC", "--detach", "--store", store,
        *d,
    )  # fmt: skip
    second = re.search(r"submitted (job-\w+)", later)
    assert second is not None, later
    book = JobBook(tmp_path / "dep" / "jobs")
    record = book.load(second[1])
    record.state, record.started_at = step(record.state, JobEvent.START), 1.0
    book.save(record)
    resumed = run("jobs", "run", second[1], "--threads", *d)
    assert f"{second[1]} fraud: succeeded" in resumed
    assert book.load(second[1]).state is JobState.SUCCEEDED
    assert Path(book.load(second[1]).spec["ranking"]).read_bytes() == alone.read_bytes()
    assert f"{second[1]} fraud succeeded 1/1" in run("jobs", "list", *d)


def test_the_fraud_job_needs_its_month_and_zone(tmp_path: Path) -> None:
    d = ["-d", str(tmp_path / "dep")]
    assert "--tz" in run("jobs", "submit", "fraud", "--month", MONTH, *d, code=2)
    assert "YYYY-MM" in run("jobs", "submit", "fraud", "--month", "2026", "--tz", "UTC", *d, code=2)
    assert "one of" in run("jobs", "submit", "mining", "--from", "2026-02-01", *d, code=2)
