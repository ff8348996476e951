"""A faulty fleet over TCP into a real store (SQLite and PostgreSQL), then a head-end restart.

Every honest reading ends up stored exactly once, every faulty packet is quarantined with
one reason, and after a restart the meters' resends change nothing.
"""

from __future__ import annotations

import asyncio
import os

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.freshness import FreshnessState
from meterseal.acquisition.ingest import Ingest
from meterseal.acquisition.stages import TrustedStages
from meterseal.acquisition.tcp import TcpLink, TcpReceiver
from meterseal.crypto import certs
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import ED25519
from meterseal.meter.faults import Fault, FaultPlan
from meterseal.meter.provisioning import provision
from meterseal.meter.simulator import SimulationReport, run_fleet, seal_meter
from meterseal.model import Reading
from meterseal.storage import Store, StoreRegistry
from tests.conftest import NOW
from tests.meter.test_simulator import REFUSED, honest_readings

PLAN = FaultPlan.every_fault(0.05)


async def _head_end(
    store: Store, headend: HeadEndKeys, ca: object, wire: dict[str, list[tuple[Fault, bytes]]]
) -> tuple[SimulationReport, TrustedStages]:
    registry = StoreRegistry(store, ca)  # type: ignore[arg-type]
    stages = TrustedStages(
        headend,
        registry,
        Anonymizer(b"e" * 32),
        state=FreshnessState({m: c for m, (c, _) in store.last_counters().items()}),
    )
    ingest = Ingest(stages, store, clock=lambda: NOW.timestamp())
    await ingest.start()
    receiver = TcpReceiver(ingest)
    port = await receiver.start()
    try:
        report = await run_fleet(wire, TcpLink("127.0.0.1", port), concurrency=4, window=16)
    finally:
        await receiver.stop()
        await ingest.stop()
    return report, stages


def test_fleet_into_store_then_restart(db_url: str) -> None:
    ca_key, ca_cert = certs.create_ca("e2e CA", now=NOW, rng=os.urandom)
    headend = HeadEndKeys.generate()
    meters = provision(ca_key, ca_cert, 5, ED25519, now=NOW, prefix="E2E", workers=1)
    verifier = MeterRegistry(ca_cert)
    records = [
        verifier.register(m.certificate, m.key.suite, m.customer_id, m.region_id) for m in meters
    ]
    start = int(NOW.timestamp()) - 40 * 900
    wire = {
        m.key.meter_id: seal_meter(
            m,
            [Reading(m.key.meter_id, c, start + c * 900, 900, 50 + c) for c in range(1, 31)],
            headend.public(),
            plan=PLAN,
            seed=11,
            now=NOW,
        )
        for m in meters
    }
    expected = honest_readings(wire, headend, verifier)
    refused = sum(1 for p in wire.values() for f, _ in p if f in REFUSED)

    with Store.open(db_url) as store:
        store.register_meters(records, now=NOW)
        report, _ = asyncio.run(_head_end(store, headend, ca_cert, wire))
        assert report.connection_errors == 0
        stored = {
            (m.key.meter_id, o.counter)
            for m in meters
            for o in store.originals(m.key.meter_id, 0, 2**40)
        }
        assert stored == expected
        first_counts = store.counters()
        assert first_counts["stored"] == len(expected)
        assert (
            sum(v for k, v in first_counts.items() if k not in ("stored", "duplicate")) == refused
        )
        assert len(store.quarantined(limit=1000)) == refused

    # Restart: a new head-end on the same database; meters resend everything they have.
    with Store.open(db_url) as store:
        _, stages = asyncio.run(_head_end(store, headend, ca_cert, wire))
        stored_again = {
            (m.key.meter_id, o.counter)
            for m in meters
            for o in store.originals(m.key.meter_id, 0, 2**40)
        }
        assert stored_again == expected
        assert store.counters()["stored"] == len(expected)
        assert stages.counts["stored"] == 0
