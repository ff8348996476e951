"""Prometheus metrics of a service: packets, rejections by reason, latencies, queue depth.

Every name says what it counts: `meterseal_rejections_total` counts refused packets only
(by reason); accepted readings are counted by what storing them did in
`meterseal_readings_stored_total{outcome="stored"|"duplicate"}`.

Each service has its own registry (so tests and one-process runs do not share global state).
Counters that a stage already keeps as a `collections.Counter` are bridged at scrape time
rather than incremented twice on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from meterseal.errors import RejectReason

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Acquisition latency runs from ~1 ms (monolith, idle) to seconds (a busy bus): log-spaced.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REJECT_REASONS = frozenset(r.value for r in RejectReason)
# acquisition.records.StoreOutcome but conflict, which is counted as the rejection
# replayed_counter (named here: the runtime sits below acquisition).
STORAGE_OUTCOMES = frozenset(("stored", "duplicate"))


class _CounterBridge(Collector):
    """Exposes a live `Mapping[str, int]` as one labelled counter family."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        source: Callable[[], Mapping[str, int]],
        keys: frozenset[str] | None,
    ) -> None:
        self.name, self.documentation, self.label, self.source = name, documentation, label, source
        self.keys = keys

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for key, value in sorted(dict(self.source()).items()):
            if self.keys is None or key in self.keys:
                family.add_metric([key], float(value))
        yield family


class ServiceMetrics:
    """The metrics of one service process, labelled with the service's name."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.acquisition = Histogram(
            "meterseal_acquisition_seconds",
            "Receive to durably stored, per accepted packet (the SGX billing paper's definition)",
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.batch = Histogram(
            "meterseal_batch_seconds",
            "Time a stage spends on one batch, from fetch to acknowledgement",
            ["stage"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.queue_depth = Gauge(
            "meterseal_queue_depth",
            "Messages or packets waiting for this service",
            ["queue"],
            registry=self.registry,
        )

    def bridge(
        self,
        name: str,
        documentation: str,
        label: str,
        source: Callable[[], Mapping[str, int]],
        *,
        keys: frozenset[str] | None = None,
    ) -> None:
        """Expose `source()` (read at scrape time; only `keys` if given) as counter `name`."""
        self.registry.register(_CounterBridge(name, documentation, label, source, keys))

    def bridge_stages(self, source: Callable[[], Mapping[str, int]]) -> None:
        """The trusted stages' counts: rejections by reason, readings by storage outcome."""
        self.bridge(
            "meterseal_rejections",
            "Packets refused by the trusted stages, by reason",
            "reason",
            source,
            keys=REJECT_REASONS,
        )
        self.bridge(
            "meterseal_readings_stored",
            "Accepted readings by what storing them did: stored (new) or duplicate (kept already)",
            "outcome",
            source,
            keys=STORAGE_OUTCOMES,
        )

    def exposition(self) -> bytes:
        """The text exposition format for GET /metrics."""
        return generate_latest(self.registry)

    def mean_acquisition(self) -> tuple[int, float]:
        """(count, mean seconds) of the acquisition histogram so far."""
        count = total = 0.0
        for metric in self.registry.collect():
            if metric.name != "meterseal_acquisition_seconds":
                continue
            for sample in metric.samples:
                if sample.name.endswith("_count"):
                    count = sample.value
                elif sample.name.endswith("_sum"):
                    total = sample.value
        return int(count), (total / count if count else 0.0)


def parse_exposition(text: str) -> dict[str, Any]:
    """Sample name{labels} -> value, for tests and the bench's scraping."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
