"""The head-end in one process: untrusted receivers, the trusted stages and the store.

This is the monolith deployment (the embedded default). The receivers only move bytes;
the stages hold the keys; the store decides durability. `meterseal serve`, `meterseal demo`
and `meterseal bench ingest` all run this one object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.freshness import FreshnessPolicy, FreshnessState
from meterseal.acquisition.ingest import Ingest
from meterseal.acquisition.mqtt_endpoint import TOPIC_PREFIX
from meterseal.acquisition.parallel import ParallelOpener
from meterseal.acquisition.stages import TrustedStages
from meterseal.acquisition.tcp import TcpLimits, TcpReceiver
from meterseal.deployment import TrustedMaterial
from meterseal.runtime.address import format_address, parse_address
from meterseal.storage import Store, StoreRegistry

if TYPE_CHECKING:
    from meterseal.acquisition.http import HttpLimits

log = logging.getLogger(__name__)


class Receiver(Protocol):
    """What the head-end needs of a transport's receiver."""

    @property
    def counts(self) -> Counter[str]:
        """What the receiver counted (connections, refused frames, …)."""
        ...

    async def stop(self) -> None:
        """Stop receiving, finish what is in flight."""
        ...


@dataclass(frozen=True)
class HeadEndSettings:
    """Where the head-end listens and how it batches; None turns a transport off."""

    tcp: str | None = "127.0.0.1:7400"
    http: str | None = None
    mqtt: str | None = None
    mqtt_prefix: str = TOPIC_PREFIX  # topics: PREFIX/readings/METER, PREFIX/acks/METER
    batch_size: int = 512
    max_delay: float = 0.005
    max_pending: int = 50_000
    registry_refresh: float = 5.0  # seconds between registry reloads (new and revoked meters)
    open_workers: int = 0  # processes that open packets; 0 opens in the stage thread
    policy: FreshnessPolicy = field(default_factory=FreshnessPolicy)
    tcp_limits: TcpLimits = field(default_factory=TcpLimits)
    http_limits: HttpLimits | None = None  # None: HttpLimits() (fastapi is imported lazily)
    http_tls: ssl.SSLContext | None = None  # set: the HTTP receiver serves HTTPS only


@dataclass
class HeadEndReport:
    """Counters and acquisition latency since start."""

    stages: Counter[str]
    transports: dict[str, Counter[str]]
    ingest: Counter[str]
    quarantine: Counter[str]  # refused packets whose bytes were not kept, or pruned since
    latency_p50: float | None
    latency_p99: float | None
    accepted: int
    seconds: float

    @property
    def throughput(self) -> float:
        """Accepted packets per second since start."""
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


class HeadEnd:
    """Receivers, batching ingest, trusted stages and the store, run together."""

    def __init__(
        self,
        material: TrustedMaterial,
        store: Store,
        settings: HeadEndSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or HeadEndSettings()
        self.store = store
        self.registry = StoreRegistry(store, material.ca_certificate)
        last = store.last_counters()
        self.material = material
        self.stages = TrustedStages(
            material.headend,
            self.registry,
            Anonymizer(material.anonymization_key),
            policy=self.settings.policy,
            state=FreshnessState({meter: counter for meter, (counter, _) in last.items()}),
        )
        self.ingest = Ingest(
            self.stages,
            store,
            batch_size=self.settings.batch_size,
            max_delay=self.settings.max_delay,
            max_pending=self.settings.max_pending,
            clock=clock,
            # Opening workers get the next batch while this one is settled (no idle gap);
            # opening in the stage thread itself, a second batch would only wait for the GIL.
            stage_depth=2 if self.settings.open_workers > 0 else 1,
        )
        self.receivers: dict[str, Receiver] = {}
        self.endpoints: dict[str, str] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._clock = clock
        self._opener: ParallelOpener | None = None
        self._started = 0.0

    async def start(self) -> dict[str, str]:
        """Start ingest and every configured receiver; returns transport -> address."""
        self._started = time.perf_counter()
        if self.settings.open_workers > 0:
            # Forked before ingest starts its thread, so the workers copy no held lock.
            self._opener = ParallelOpener(
                self.material.headend, self.registry, self.settings.open_workers
            )
            self.stages.opener = self._opener
        await self.ingest.start()
        settings = self.settings
        if settings.tcp is not None:
            tcp = TcpReceiver(self.ingest, settings.tcp_limits)
            host, port = parse_address(settings.tcp, 7400)
            port = await tcp.start(host, port)
            self.receivers["tcp"], self.endpoints["tcp"] = tcp, format_address(host, port)
        if settings.http is not None:
            from meterseal.acquisition.http import HttpReceiver

            http = HttpReceiver(self.ingest, settings.http_limits, settings.http_tls)
            host, port = parse_address(settings.http, 8080)
            port = await http.start(host, port)
            self.receivers["http"], self.endpoints["http"] = http, http.url(host, port)
        if settings.mqtt is not None:
            from meterseal.acquisition.mqtt import MqttReceiver

            mqtt = MqttReceiver(self.ingest, settings.mqtt, prefix=settings.mqtt_prefix)
            await mqtt.start()
            self.receivers["mqtt"], self.endpoints["mqtt"] = mqtt, mqtt.endpoint.shown()
        self._refresher = asyncio.create_task(self._refresh_registry(), name="registry-refresh")
        self._pruner = asyncio.create_task(self._prune_quarantine(), name="quarantine-prune")
        return dict(self.endpoints)

    async def stop(self) -> None:
        """Stop receivers first, then let ingest finish what it already accepted."""
        for task in (self._refresher, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for receiver in self.receivers.values():
            await receiver.stop()
        await self.ingest.stop()
        if self._opener is not None:
            self._opener.close()
            self.stages.opener = self._opener = None

    async def _refresh_registry(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_refresh)
            try:
                await asyncio.to_thread(self.registry.refresh)
            except Exception:
                log.exception("registry refresh failed; keeping the previous one")

    async def _prune_quarantine(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.store.prune_quarantine, self._clock())
            except Exception:
                log.exception("quarantine prune failed; trying again later")
            await asyncio.sleep(self.store.quarantine_limits.prune_every)

    def report(self) -> HeadEndReport:
        """Counters and latency percentiles so far."""
        latencies = np.fromiter(self.ingest.latencies, float)
        p50, p99 = (
            (float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)))
            if len(latencies)
            else (None, None)
        )
        return HeadEndReport(
            stages=_snapshot(self.stages.counts),
            transports={name: _snapshot(r.counts) for name, r in self.receivers.items()},
            ingest=_snapshot(self.ingest.counts),
            quarantine=_snapshot(self.store.quarantine_counts),
            latency_p50=p50,
            latency_p99=p99,
            accepted=self.ingest.counts["accepted"],
            seconds=time.perf_counter() - self._started,
        )


def _snapshot(counts: Counter[str]) -> Counter[str]:
    # dict.copy runs in C without releasing the GIL, so a stage thread adding a key meanwhile
    # cannot break it the way iterating the Counter can.
    return Counter(dict.copy(counts))
