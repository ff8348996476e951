"""The Monitor's figures as Prometheus metrics, labelled with the job's id."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from meterseal.jobs.control import Decision
from meterseal.jobs.monitor import Snapshot

# Snapshot field -> (metric name, help)
GAUGES = {
    "progress": ("meterseal_job_progress", "Share of the job's tasks done (0..1)"),
    "expected": ("meterseal_job_expected_progress", "Share of the deadline used (0..1)"),
    "error": ("meterseal_job_error", "Progress minus expected progress (negative: late)"),
    "workers": ("meterseal_job_workers", "Dask workers asked for at the last check"),
    "queued": ("meterseal_job_queued_chunks", "Chunks not finished yet"),
    "tasks_per_second": ("meterseal_job_tasks_per_second", "Tasks done per second so far"),
    "trusted_used": ("meterseal_job_trusted_memory_used_mib", "Trusted memory running tasks hold"),
    "trusted_capacity": (
        "meterseal_job_trusted_memory_capacity_mib",
        "Trusted memory the workers declare",
    ),
}


class JobMetrics:
    """Gauges of each job's last check and a counter of the Controller's actuations."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.gauges = {
            field: Gauge(name, text, ["job"], registry=self.registry)
            for field, (name, text) in GAUGES.items()
        }
        self.measured = Gauge(
            "meterseal_job_worker_trusted_memory_mib",
            "Trusted memory each trusted worker measures (simulated enclave: its process's RSS)",
            ["job", "worker"],
            registry=self.registry,
        )
        self._measured: dict[str, set[str]] = {}  # the workers each job's gauge shows
        self.actuations = Counter(
            "meterseal_job_actuations",
            "Checks at which the Controller changed the worker count",
            ["job"],
            registry=self.registry,
        )

    def observe(self, job_id: str, snapshot: Snapshot, decision: Decision | None) -> None:
        """Publish one check of `job_id`."""
        figures = snapshot.to_dict()
        for field, gauge in self.gauges.items():
            gauge.labels(job=job_id).set(figures[field])
        now = dict(snapshot.trusted_measured)
        for worker in self._measured.get(job_id, set()) - now.keys():  # left since: no figure
            self.measured.remove(job_id, worker)
        for worker, mib in now.items():
            self.measured.labels(job=job_id, worker=worker).set(mib)
        self._measured[job_id] = set(now)
        if decision is not None and decision.acted:
            self.actuations.labels(job=job_id).inc()


DEFAULT_PORT = 9464  # what docs/jobs-grafana/prometheus.yml scrapes


def serve_metrics(metrics: JobMetrics, port: int, addr: str = "127.0.0.1") -> tuple[Any, int]:
    """Serve `metrics` at http://addr:port/metrics in a thread; the server and its port."""
    server, _ = start_http_server(port, addr=addr, registry=metrics.registry)
    return server, int(server.server_port)
