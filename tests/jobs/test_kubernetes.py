"""The Kubernetes Job actuator against a stand-in of the batch/v1 API; a remote engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterseal.jobs import kubernetes
from meterseal.jobs.engine import local_engine, remote_engine
from meterseal.jobs.kubernetes import KubernetesError, KubernetesJobActuator

PATH = "/apis/batch/v1/namespaces/meterseal/jobs/dask-workers"


class FakeApi:
    """A Kubernetes API holding one Job; records what it was asked."""

    def __init__(self) -> None:
        self.job: dict[str, Any] = {
            "metadata": {"name": "dask-workers"},
            "spec": {"parallelism": 1},
        }
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path != PATH:
            return httpx.Response(404, json={"reason": "NotFound"})
        if request.headers.get("authorization") != "Bearer tok":
            return httpx.Response(401, json={"reason": "Unauthorized"})
        if request.method == "PATCH":
            if request.headers["content-type"] != "application/merge-patch+json":
                return httpx.Response(415)
            self.job["spec"].update(json.loads(request.content)["spec"])
        return httpx.Response(200, json=self.job)


def actuator(api: FakeApi, job: str = "dask-workers", token: str = "tok") -> KubernetesJobActuator:
    """The actuator talking to `api`."""
    return KubernetesJobActuator(
        job, "meterseal", api="https://k8s.test", token=token, transport=httpx.MockTransport(api)
    )


def test_scaling_patches_the_job_s_parallelism() -> None:
    api = FakeApi()
    scaler = actuator(api)
    assert scaler.workers() == 1
    scaler.scale(3)
    assert api.job["spec"]["parallelism"] == 3
    assert scaler.workers() == 3
    assert [r.method for r in api.seen] == ["GET", "PATCH", "GET"]


def test_refusals_are_errors_naming_the_job() -> None:
    with pytest.raises(KubernetesError, match="401"):
        actuator(FakeApi(), token="wrong").scale(2)
    with pytest.raises(KubernetesError, match="404"):
        actuator(FakeApi(), job="other").workers()


def test_not_in_a_pod_is_said(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kubernetes, "SERVICE_ACCOUNT", tmp_path / "no-service-account")
    with pytest.raises(KubernetesError, match="not in a Kubernetes pod"):
        KubernetesJobActuator.in_cluster("dask-workers")


def test_a_remote_engine_runs_on_a_running_scheduler() -> None:
    api = FakeApi()
    with (
        local_engine(1, processes=False) as local,
        remote_engine(local.address, actuator(api)) as far,
    ):
        assert far.client.submit(sum, [1, 2, 3]).result() == 6
        far.actuator.scale(2)
    assert api.job["spec"]["parallelism"] == 2
