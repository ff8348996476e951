"""The jobs' metrics over HTTP, and the Grafana dashboard and scrape config that read them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import yaml  # type: ignore[import-untyped]

from meterseal.jobs.control import Decision, Observation
from meterseal.jobs.metrics import DEFAULT_PORT, JobMetrics, serve_metrics
from meterseal.jobs.monitor import Snapshot
from meterseal.runtime.metrics import parse_exposition

GRAFANA = Path(__file__).resolve().parents[2] / "docs" / "jobs-grafana"


def exported() -> set[str]:
    """Every sample name the jobs' metrics export once a job was observed."""
    metrics = JobMetrics()
    seen = Observation(5, 10, 30.0, 100.0, 2, 3)
    metrics.observe(
        "job-1",
        Snapshot(seen, 0.5, trusted_measured=(("w-0", 80.0),)),
        Decision(3, seen.error, True, "late"),
    )
    return {s.name for family in metrics.registry.collect() for s in family.samples}


def test_the_metrics_are_served_over_http() -> None:
    metrics = JobMetrics()
    seen = Observation(5, 10, 30.0, 100.0, 2, 3)
    metrics.observe("job-1", Snapshot(seen, 0.5), Decision(3, seen.error, True, "late"))
    server, port = serve_metrics(metrics, 0)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.shutdown()
        server.server_close()
    assert 'meterseal_job_progress{job="job-1"} 0.5' in text
    assert 'meterseal_job_error{job="job-1"} 0.2' in text
    assert 'meterseal_job_actuations_total{job="job-1"} 1.0' in text
    assert parse_exposition(text)


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((GRAFANA / "dashboard.json").read_text())
    names = exported()
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(queries) >= 6
    for query in queries:
        used = re.findall(r"meterseal_\w+", query)
        assert used, query
        assert set(used) <= names, query


def test_the_scrape_config_reads_the_default_port() -> None:
    config = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULT_PORT}"]


def test_a_worker_that_left_has_no_measured_memory_any_more() -> None:
    metrics = JobMetrics()
    seen = Observation(5, 10, 30.0, 100.0, 2, 3)
    both = Snapshot(seen, 0.5, trusted_measured=(("w-0", 80.0), ("w-1", 90.0)))
    metrics.observe("job-1", both, None)
    metrics.observe("job-1", Snapshot(seen, 0.5, trusted_measured=(("w-0", 85.0),)), None)
    sample = metrics.registry.get_sample_value
    name = "meterseal_job_worker_trusted_memory_mib"
    assert sample(name, {"job": "job-1", "worker": "w-0"}) == 85.0
    assert sample(name, {"job": "job-1", "worker": "w-1"}) is None
