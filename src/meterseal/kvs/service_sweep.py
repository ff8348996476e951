"""The gateway's background sweep: blobs no manifest names are deleted after a grace period.

A write that crashed before its manifest was saved, a replaced or deleted version whose blobs
a failing node kept, a repair's moved blob: their blobs stay on the nodes, named by nothing.
`Sweeper.watch` runs `repair.sweep` every `every` seconds over the gateway's own bucket and
every bucket of its registry (one marker object per bucket, so no gateway's registration is
lost to another's); a blob unnamed for `grace` seconds goes. A catalog holding a bucket the
registry does not name stops the round before anything is deleted, and so does a manifest that
does not open. Each round also retries the deletes failing nodes refused (`store.collect`).
Metrics: `meterseal_kvs_sweeps_total{outcome}` (ok, stopped, failed),
`meterseal_kvs_swept_blobs_total`, `meterseal_kvs_sweep_suspects` (unnamed blobs waiting for
their grace period).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from meterseal.errors import KvsError
from meterseal.kvs.gateway_state import RESERVED, GatewayState
from meterseal.kvs.repair import SweepReport, sweep
from meterseal.kvs.store import ObjectStore

SWEEP_EVERY = 600.0  # seconds between rounds
SWEEP_GRACE = 3600.0  # seconds a blob stays unnamed before it goes: far above any write
_log = logging.getLogger(__name__)


class SweepMetrics:
    """Prometheus metrics of the sweep."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.rounds = Counter(
            "meterseal_kvs_sweeps",
            "Sweep rounds of the KVS gateway by outcome (ok, stopped: nothing deleted, failed)",
            ["outcome"],
            registry=registry,
        )
        self.deleted = Counter(
            "meterseal_kvs_swept_blobs",
            "Blobs no manifest named for the grace period, deleted by the sweep",
            registry=registry,
        )
        self.suspects = Gauge(
            "meterseal_kvs_sweep_suspects",
            "Unnamed blobs the last sweep saw, kept until their grace period has passed",
            registry=registry,
        )

    def register(self, registry: CollectorRegistry) -> None:
        """Expose the metrics in `registry` too (the service's, scraped at /metrics)."""
        for metric in (self.rounds, self.deleted, self.suspects):
            registry.register(metric)


@dataclass
class Sweeper:
    """Sweeps `store` every `every` seconds, deleting blobs unnamed for `grace` seconds."""

    store: ObjectStore
    state: GatewayState
    every: float = SWEEP_EVERY
    grace: float = SWEEP_GRACE
    metrics: SweepMetrics = field(default_factory=SweepMetrics)
    suspects: dict[tuple[str, str], float] = field(default_factory=dict, init=False)

    async def round(self) -> SweepReport | None:
        """One sweep; its report, None when it stopped (logged, counted) and deleted nothing."""
        try:
            buckets = [RESERVED, *await self.state.buckets()]
            report = await sweep(self.store, buckets, self.suspects, self.grace)
        except KvsError as exc:
            _log.warning("kvs sweep: %s", exc)
            self.metrics.rounds.labels("stopped").inc()
            return None
        await self.store.collect()
        self.metrics.rounds.labels("ok").inc()
        self.metrics.deleted.inc(report.deleted)
        self.metrics.suspects.set(report.suspects)
        if report.deleted or report.unreachable:
            _log.info(
                "kvs sweep: %d unnamed blob(s) deleted, %d waiting; unreachable: %s",
                report.deleted,
                report.suspects,
                ", ".join(report.unreachable) or "none",
            )
        return report

    async def watch(self) -> None:
        """A round every `every` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.round()
            except Exception:  # a node's odd failure must not end the sweeping for good
                _log.exception("kvs sweep failed")
                self.metrics.rounds.labels("failed").inc()
