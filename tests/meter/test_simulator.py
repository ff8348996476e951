"""The fleet simulator against a real TCP receiver: faults land as they should, nothing is lost."""

from __future__ import annotations

import asyncio

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.ingest import Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.stages import TrustedStages
from meterseal.acquisition.tcp import TcpLink, TcpReceiver
from meterseal.crypto import packet
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.registry import MeterDirectory
from meterseal.crypto.suites import P256
from meterseal.meter.faults import Fault, FaultPlan
from meterseal.meter.provisioning import provision, register_fleet
from meterseal.meter.simulator import SimulationReport, run_fleet, seal_meter
from meterseal.model import Reading
from tests.conftest import NOW, World

HONEST = (Fault.NONE, Fault.REORDER, Fault.DUPLICATE, Fault.REPLAY)
REFUSED = (Fault.CORRUPT, Fault.WRONG_KEY, Fault.CLOCK_SKEW)


def honest_readings(
    wire: dict[str, list[tuple[Fault, bytes]]], headend: HeadEndKeys, registry: MeterDirectory
) -> set[tuple[str, int]]:
    """(meter, counter) of every honest packet the fleet put on the wire."""
    return {
        (o.reading.meter_id, o.reading.counter)
        for packets in wire.values()
        for fault, data in packets
        if fault in HONEST
        for o in [packet.open(data, headend, registry, now=NOW)]
    }


def test_faulty_fleet_stores_each_sent_reading_once(world: World) -> None:
    meters = provision(world.ca_key, world.ca_cert, 6, P256, now=NOW, prefix="SIM", workers=1)
    register_fleet(world.registry, meters)
    start = int(NOW.timestamp()) - 40 * 900
    plan = FaultPlan.every_fault(0.05)
    wire = {
        m.key.meter_id: seal_meter(
            m,
            [Reading(m.key.meter_id, c, start + c * 900, 900, 100 + c) for c in range(1, 31)],
            world.headend.public(),
            plan=plan,
            seed=5,
            now=NOW,
        )
        for m in meters
    }

    async def scenario() -> tuple[MemorySink, TrustedStages, SimulationReport]:
        sink = MemorySink()
        stages = TrustedStages(world.headend, world.registry, Anonymizer(b"s" * 32))
        ingest = Ingest(stages, sink, clock=lambda: NOW.timestamp())
        await ingest.start()
        receiver = TcpReceiver(ingest)
        port = await receiver.start()
        report = await run_fleet(wire, TcpLink("127.0.0.1", port), concurrency=3, window=8)
        await receiver.stop()
        await ingest.stop()
        return sink, stages, report

    sink, stages, report = asyncio.run(scenario())
    expected = honest_readings(wire, world.headend, world.registry)
    assert report.connection_errors == 0
    assert set(sink.originals) == expected  # every honest reading on the wire, stored once
    assert len(sink.quarantine) == sum(1 for p in wire.values() for f, _ in p if f in REFUSED)
    assert {r.reason for r in sink.quarantine} <= {
        "decrypt_failed",
        "malformed",
        "bad_signature",
        "future_timestamp",
    }
    assert stages.counts["duplicate"] == sum(
        1 for p in wire.values() for f, _ in p if f in (Fault.DUPLICATE, Fault.REPLAY)
    )
