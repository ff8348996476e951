"""`meterseal jobs submit|run|status|cancel|list` on a deployment on disk."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.billing.conftest import PERIOD
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run

FIRST = dt.datetime.fromtimestamp(PERIOD.start, dt.UTC).date().isoformat()


def kept(url: str) -> list[tuple[str, bool, dict]]:  # type: ignore[type-arg]
    """The reports of a database, by bill, without their audit time."""
    with Store.open(url) as store:
        found = [(r.bill_id, r.clean, r.report) for r in BillStore(store).reports()]
    for _, _, report in found:
        report.pop("audited_at", None)
    return sorted(found, key=lambda r: r[0])


def test_the_validation_job_from_the_command_line(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 2)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-tou")
    d = ["-d", str(deployment)]
    spread, alone = f"sqlite:///{tmp_path / 'spread.db'}", f"sqlite:///{tmp_path / 'alone.db'}"

    out = run(
        "jobs", "submit", "validation", "--from", FIRST, "--days", "1", "--threads",
        "--chunk", "1", "--tolerance", "0.05", "--metrics-port", "0",
        "--trusted-memory", "100", "--task-memory", "60",
        "--store", store, "--reports", spread, *d,
    )  # fmt: skip
    job = re.search(r"submitted (job-\w+)", out)
    assert job is not None, out
    assert f"{job[1]} validation: succeeded, 2 results written" in out
    assert f"meterseal jobs status {job[1]}" in out
    assert "metrics: http://127.0.0.1:" in out
    run("audit", "--store", store, "--reports", alone, *d)
    assert kept(spread) == kept(alone)
    assert [clean for _, clean, _ in kept(spread)] == [True, True]

    shown = run("jobs", "status", job[1], *d)
    assert "progress 100.0%" in shown
    assert "of 100 MiB held" in shown
    assert "error: job cannot cancel when succeeded" in run("jobs", "cancel", job[1], *d, code=2)

    later = run(
        "jobs", "submit", "validation", "--from", FIRST, "--days", "1", "--detach",
        "--mode", "pid", "--set", "kp=8", "--store", store, *d,
    )  # fmt: skip
    second = re.search(r"submitted (job-\w+)", later)
    assert second is not None, later
    assert f"meterseal jobs run {second[1]}" in later
    assert f"{second[1]}: cancelled" in run("jobs", "cancel", second[1], *d)
    assert "job cannot run when cancelled" in run("jobs", "run", second[1], "--threads", *d, code=2)
    listed = run("jobs", "list", *d)
    assert f"{job[1]} validation succeeded 2/2" in listed
    assert f"{second[1]} validation cancelled" in listed
    assert "--set" in run(
        "jobs", "submit", "validation", "--from", FIRST, "--set", "kp", *d, code=2
    )


def test_a_submission_naming_a_missing_store_is_refused_before_any_record(
    tmp_path: Path,
) -> None:
    # It was recorded `submitted` (`jobs list` showed it) and failed only once run.
    missing = tmp_path / "missing.db"
    where = ["-d", str(tmp_path / "dep"), "--store", f"sqlite:///{missing}", "--detach"]
    for asked in (
        ["validation", "--from", FIRST, "--days", "1"],
        ["fraud", "--month", "2026-01", "--tz", "Europe/Berlin"],
    ):
        out = run("jobs", "submit", *asked, *where, code=2)
        assert out.strip().splitlines() == [
            f"error: cannot reach the store sqlite:///{missing}: {missing} does not exist "
            "(run a writer (e.g. `meterseal serve`) once to create it)"
        ], out
    assert not (tmp_path / "dep" / "jobs").exists()  # no record, no lock file
    assert not missing.exists()  # the refusal made no database either
