"""The fraud job reading the KVS export: the ranking `fraud rank --store` writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meterseal.kvs.gateway_keys import Right
from tests.billing.on_disk import run
from tests.kvs.test_export import town  # noqa: F401 - the fixture
from tests.kvs.test_export_cli import export, originals_gateway


def test_the_fraud_job_from_the_kvs_export_ranks_as_fraud_rank_store(
    town: str,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    period = ["--from", "2026-10-20", "--days", "12", "--tz", "UTC"]
    d = ["-d", str(tmp_path / "dep")]
    with originals_gateway(Right.READ, Right.WRITE) as (url, key):
        monkeypatch.setenv("MS_KVS_KEY", key)
        assert "16 customer objects" in export(
            "--month", "2026-10", "--gateway", url, "--store", town
        )
        # The store is not read: the job is given one that does not exist.
        absent = f"sqlite:///{tmp_path / 'absent.db'}"
        out = run(
            "jobs", "submit", "fraud", *period, "--from-kvs", "--gateway", url, "--threads",
            "--chunk", "4", "--store", absent, *d,
        )  # fmt: skip
        job = re.search(r"submitted (job-\w+)", out)
        assert job is not None, out
        assert f"{job[1]} fraud: succeeded, 16 results written" in out
        ranking = re.search(r"ranking: (\S+)", out)
        assert ranking is not None, out
        shown = run("jobs", "status", job[1], *d)
        assert "succeeded" in shown
        missing = run(
            "jobs", "submit", "fraud", "--from", "2026-08-01", "--days", "3", "--tz", "UTC",
            "--from-kvs", "--gateway", url, "--threads", "--store", absent, *d, code=2,
        )  # fmt: skip
        assert "the KVS has no export of 2026-08" in missing
    assert "--gateway" in run("jobs", "submit", "fraud", *period, "--from-kvs", *d, code=2)
    from_store = tmp_path / "store.csv"
    run("fraud", "rank", "--store", town, *period, "--out", str(from_store))
    assert Path(ranking[1]).read_text() == from_store.read_text()
