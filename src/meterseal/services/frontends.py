"""The stages that face meters: the services-mode receiver, and the whole monolith head-end."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from meterseal.acquisition.headend import HeadEnd, HeadEndSettings, Receiver
from meterseal.acquisition.tcp import TcpReceiver
from meterseal.deployment import TrustedMaterial
from meterseal.runtime.address import format_address, parse_address
from meterseal.runtime.metrics import ServiceMetrics
from meterseal.runtime.readiness import Readiness
from meterseal.services.bus import Bus
from meterseal.services.intake import BusIntake, IntakeSettings
from meterseal.storage import Store


def _snapshot(counts: Counter[str]) -> dict[str, int]:
    return dict(dict.copy(counts))


class ReceiverService:
    """Untrusted: TCP/HTTP/MQTT receivers publishing to the bus. Holds no key."""

    name = "receiver"

    def __init__(
        self, bus: Bus, settings: HeadEndSettings, intake: IntakeSettings | None = None
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.intake = BusIntake(bus, intake)
        self.receivers: dict[str, Receiver] = {}
        self.readiness = Readiness(bus.not_ready)
        self.metrics = ServiceMetrics(self.name)
        self.metrics.bridge(
            "meterseal_packets",
            "Packets received, by what became of them: published to the bus, bus_unavailable, "
            "overload",
            "outcome",
            lambda: self.intake.counts,
        )
        self.metrics.queue_depth.labels("unconfirmed").set_function(self.intake.pending)

    async def start(self) -> dict[str, str]:
        """Start every configured receiver on the bus intake."""
        endpoints: dict[str, str] = {}
        if self.settings.tcp is not None:
            tcp = TcpReceiver(self.intake)
            host, port = parse_address(self.settings.tcp, 7400)
            port = await tcp.start(host, port)
            self.receivers["tcp"], endpoints["tcp"] = tcp, format_address(host, port)
        if self.settings.http is not None:
            from meterseal.acquisition.http import HttpReceiver

            http = HttpReceiver(self.intake, tls=self.settings.http_tls)
            host, port = parse_address(self.settings.http, 8080)
            port = await http.start(host, port)
            self.receivers["http"], endpoints["http"] = http, http.url(host, port)
        if self.settings.mqtt is not None:
            from meterseal.acquisition.mqtt import MqttReceiver

            mqtt = MqttReceiver(self.intake, self.settings.mqtt, prefix=self.settings.mqtt_prefix)
            await mqtt.start()
            self.receivers["mqtt"], endpoints["mqtt"] = mqtt, mqtt.endpoint.shown()
        return endpoints

    async def run(self, stop: asyncio.Event) -> None:
        """Receivers run on their own; wait for the stop signal."""
        await stop.wait()

    async def stop(self) -> None:
        """Stop receiving, then publish what was gathered."""
        for receiver in self.receivers.values():
            await receiver.stop()
        await self.intake.close()

    def counters(self) -> dict[str, Any]:
        """Intake and transport counters."""
        return {
            "intake": _snapshot(self.intake.counts),
            "transports": {n: _snapshot(r.counts) for n, r in self.receivers.items()},
            "pending": self.intake.pending(),
        }


class MonolithService:
    """The head-end in one process (receivers, trusted stages, store) as a runtime stage."""

    name = "monolith"

    def __init__(self, material: TrustedMaterial, store: Store, settings: HeadEndSettings) -> None:
        self.headend = HeadEnd(material, store, settings)
        self.readiness = Readiness(store.not_ready)
        self.metrics = ServiceMetrics(self.name)
        ingest, stages = self.headend.ingest, self.headend.stages
        self.metrics.bridge(
            "meterseal_packets",
            "Packets answered, by the answer (accepted, rejected, retry) or why none (overload)",
            "outcome",
            lambda: ingest.counts,
        )
        self.metrics.bridge_stages(lambda: stages.counts)
        self.metrics.bridge(
            "meterseal_quarantine_discarded",
            "Refused packets not kept in quarantine (dropped) or deleted by retention (pruned)",
            "cause",
            lambda: store.quarantine_counts,
        )
        receivers = self.headend.receivers
        self.metrics.bridge(
            "meterseal_receiver_events",
            "Receivers' connection and framing events and refusals, as transport_event",
            "event",
            lambda: {
                f"{t}_{k}": v for t, r in receivers.items() for k, v in dict(r.counts).items()
            },
        )
        self.metrics.queue_depth.labels("ingest").set_function(ingest.pending)
        self._observed = 0

    async def start(self) -> dict[str, str]:
        """Start the head-end; its endpoints."""
        return await self.headend.start()

    async def run(self, stop: asyncio.Event) -> None:
        """Feed acquisition latencies to the histogram until stopped."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            self.observe_latencies()

    def observe_latencies(self) -> None:
        """Move the head-end's new latency samples into the Prometheus histogram."""
        latencies = self.headend.ingest.latencies
        total = self.headend.ingest.counts["accepted"]
        fresh = min(total - self._observed, len(latencies))
        for value in list(latencies)[len(latencies) - fresh :] if fresh > 0 else ():
            self.metrics.acquisition.observe(value)
        self._observed = total

    async def stop(self) -> None:
        """Stop receivers, finish ingest."""
        await self.headend.stop()
        self.observe_latencies()

    def counters(self) -> dict[str, Any]:
        """The head-end's report as plain counters."""
        report = self.headend.report()
        return {
            "stages": dict(report.stages),
            "ingest": dict(report.ingest),
            "transports": {n: dict(c) for n, c in report.transports.items()},
            "quarantine": dict(report.quarantine),
        }
