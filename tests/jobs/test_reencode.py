"""The KVS policy re-encode job: a bucket's objects moved to a policy through the gateway."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseal.errors import ConfigurationError
from meterseal.jobs.engine import Engine
from meterseal.jobs.lifecycle import JobState
from meterseal.jobs.manager import Manager
from meterseal.jobs.records import JobBook
from meterseal.jobs.reencode import ReencodeSpec, reencode_chunk
from meterseal.jobs.submission import Control, Site, Submission, job_view
from tests.billing.on_disk import run
from tests.kvs.gateway_fixtures import Gateway, serve_gateway


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    """A gateway over memory nodes; its default policy is ec:3+2."""
    with serve_gateway() as served:
        yield served


def _objects(gateway: Gateway, prefix: str, count: int) -> dict[str, bytes]:
    rw = gateway.client("meters-rw")
    made = {f"{prefix}{i:02d}": bytes([i]) * (700 * i + 1) for i in range(count)}
    for name, data in made.items():
        assert rw.put(f"/v1/kvs/meters/{name}", content=data).status_code in (200, 201)
    return made


def _policies(gateway: Gateway, prefix: str) -> dict[str, str]:
    listed = gateway.client("meters-rw").get("/v1/kvs/meters", params={"prefix": prefix})
    return {o["key"]: o["policy"] for o in listed.json()["objects"]}


def test_a_reencode_job_moves_every_object_and_keeps_its_content(
    gateway: Gateway, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _objects(gateway, "job/", 7)
    _objects(gateway, "other/", 2)  # outside the prefix: left alone
    monkeypatch.setenv("MS_KVS_KEY", gateway.keys["meters-rw"])
    ticks = itertools.count(1_790_000_000)
    boss = Manager(JobBook(tmp_path / "jobs"), clock=lambda: float(next(ticks)))
    site = Site("sqlite://", tmp_path, gateway=gateway.url)
    control = Control(deadline=3600.0, max_workers=1, interval=0.2)
    asked = Submission("reencode", control, chunk=3, bucket="meters", prefix="job/", policy="rep:2")
    job = boss.submit(asked, site)
    assert job_view(job)["input"] == {
        "bucket": "meters",
        "prefix": "job/",
        "policy": "rep:2",
        "chunk": 3,
    }
    ended = boss.run(job.job_id, engine)
    assert (ended.state, ended.written) == (JobState.SUCCEEDED, 7)
    assert ended.status["total"] == 7
    assert ended.status["progress"] == 1.0
    assert set(_policies(gateway, "job/").values()) == {"rep:2"}
    assert set(_policies(gateway, "other/").values()) == {"ec:3+2"}
    reader = gateway.client("meters-read")
    for name, data in made.items():
        assert reader.get(f"/v1/kvs/meters/{name}").content == data

    # Run again (as a resumed job would): nothing is left to move, nothing moves twice.
    again = boss.submit(asked, site)
    assert boss.run(again.job_id, engine).written == 0
    spec = ReencodeSpec(gateway.url, "meters", "rep:2", "job/")
    assert reencode_chunk(spec, sorted(made)) == []  # a retried task re-encodes nothing
    assert reencode_chunk(spec, ["job/gone"]) == []  # deleted since the listing: skipped


def test_a_reencode_job_is_refused_without_its_gateway_or_with_a_bad_policy(
    tmp_path: Path,
) -> None:
    boss = Manager(JobBook(tmp_path / "jobs"))
    control = Control(deadline=60.0)
    asked = Submission("reencode", control, bucket="meters", policy="rep:2")
    with pytest.raises(ConfigurationError, match="--gateway"):
        boss.submit(asked, Site("sqlite://", tmp_path))
    bad = Submission("reencode", control, bucket="meters", policy="raid5")
    with pytest.raises(ConfigurationError, match="unknown policy"):
        boss.submit(bad, Site("sqlite://", tmp_path, gateway="http://127.0.0.1:1"))


def test_jobs_submit_reencode_from_the_command_line(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _objects(gateway, "cli/", 3)
    monkeypatch.setenv("MS_KVS_KEY", gateway.keys["meters-rw"])
    out = run(
        "jobs", "submit", "reencode", "--bucket", "meters", "--prefix", "cli/",
        "--policy", "hybrid:3+2", "--gateway", gateway.url, "--threads", "--chunk", "2",
        "-d", str(tmp_path),
    )  # fmt: skip
    assert "reencode: succeeded, 3 results written" in out
    assert set(_policies(gateway, "cli/").values()) == {"hybrid:3+2"}
