"""The quarantine's caps on SQLite and PostgreSQL: a garbage flood is refused and counted, the
quarantine stays within its per-source and total budget and its retention, good readings all
go in."""

from __future__ import annotations

import asyncio
import os

import pytest

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.http import HttpLink, HttpReceiver
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.records import Rejection, StoreOutcome
from meterseal.acquisition.stages import TrustedStages
from meterseal.acquisition.tcp import TcpReceiver, send_frames
from meterseal.crypto import certs, packet
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.registry import MeterRecord, MeterRegistry
from meterseal.crypto.suites import ED25519
from meterseal.meter.provisioning import provision
from meterseal.model import Reading
from meterseal.storage import Store, StoreRegistry
from meterseal.storage.quarantine import QuarantineBudget, QuarantineLimits, quarantine_source
from tests.conftest import NOW
from tests.storage.conftest import reading

STORED = StoreOutcome.STORED
GARBAGE = b"\xa5" * 8192  # a frame the size of the attack's, not a packet


def _garbage(count: int, source: str, at: float = 100.0) -> list[Rejection]:
    return [Rejection("malformed", GARBAGE, at, f"{source}:{40000 + i}") for i in range(count)]


def test_sources_are_counted_without_their_port() -> None:
    assert quarantine_source("tcp:10.0.0.1:4000") == "tcp:10.0.0.1"
    assert quarantine_source("tcp:2001:db8::1:4000") == "tcp:2001:db8::/64"
    assert quarantine_source("http:10.0.0.1:80") == "http:10.0.0.1"
    assert quarantine_source("mqtt:meterseal/v1/readings/M-1") == "mqtt:meterseal/v1/readings/M-1"
    assert quarantine_source("meter:M-1") == "meter:M-1"


def test_budget_refills_per_source_and_caps_the_total() -> None:
    limits = QuarantineLimits(per_source_burst=3, per_source_rate=1.0, total_burst=5, total_rate=0)
    budget = QuarantineBudget(limits)
    assert len(budget.admit(_garbage(10, "tcp:10.0.0.1", at=0.0))) == 3
    assert len(budget.admit(_garbage(10, "tcp:10.0.0.1", at=2.0))) == 2  # two seconds earned
    assert len(budget.admit(_garbage(10, "tcp:10.0.0.2", at=2.0))) == 0  # the total is spent


def test_a_flood_from_one_source_is_cut_while_others_and_good_readings_go_in(
    db_url: str, fleet: list[MeterRecord]
) -> None:
    limits = QuarantineLimits(per_source_burst=20, per_source_rate=0.0)
    with Store.open(db_url, quarantine=limits) as store:
        store.register_meters(fleet, now=NOW)
        for counter in range(1, 11):  # ten batches, each a good reading amid 30 garbage frames
            flood = _garbage(30, "tcp:10.6.6.6")
            other = [Rejection("bad_signature", b"p", 100.0, f"tcp:10.0.0.{counter}:1")]
            assert store.save_batch([reading("M-001", counter)], flood + other) == [STORED]
        assert store.counters() == {"stored": 10, "malformed": 300, "bad_signature": 10}
        kept = store.quarantined(limit=1000)
        assert sum(q.source.startswith("tcp:10.6.6.6:") for q in kept) == 20
        assert sum(q.reason == "bad_signature" for q in kept) == 10
        assert store.quarantine_counts == {"dropped": 280}
        assert len(store.originals("M-001", 0, 2**62)) == 10


def test_prune_keeps_the_newest_rows_within_age_and_count(db_url: str) -> None:
    limits = QuarantineLimits(max_rows=5, max_age=1000.0)
    with Store.open(db_url, quarantine=limits) as store:
        old = [Rejection("malformed", b"o", 10.0, f"tcp:10.0.0.{i}:1") for i in range(3)]
        new = [Rejection("malformed", b"n", 2000.0 + i, f"tcp:10.0.1.{i}:1") for i in range(8)]
        store.save_batch([], old)
        store.save_batch([], new)
        assert store.prune_quarantine(now=2500.0) == 6  # three too old, then three too many
        assert [q.received_at for q in store.quarantined()] == [
            2007.0,
            2006.0,
            2005.0,
            2004.0,
            2003.0,
        ]
        assert store.prune_quarantine(now=2500.0) == 0
        assert store.quarantine_counts == {"pruned": 6}
        assert store.counters() == {"malformed": 11}


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_a_garbage_flood_leaves_the_quarantine_within_its_cap(db_url: str, transport: str) -> None:
    ca_key, ca_cert = certs.create_ca("flood CA", now=NOW, rng=os.urandom)
    headend = HeadEndKeys.generate()
    [meter] = provision(ca_key, ca_cert, 1, ED25519, now=NOW, prefix="FLD", workers=1)
    record = MeterRegistry(ca_cert).register(
        meter.certificate, meter.key.suite, meter.customer_id, meter.region_id
    )
    start = int(NOW.timestamp()) - 100 * 900
    good = [
        packet.seal(
            Reading(meter.key.meter_id, c, start + c * 900, 900, 7),
            meter.key,
            headend.public(),
            meter.key.suite,
            now=NOW,
            rng=os.urandom,
        )
        for c in range(1, 41)
    ]
    frames = [f for g in good for f in (g, *[GARBAGE] * 5)]  # 200 garbage frames, interleaved
    limits = QuarantineLimits(per_source_burst=32, per_source_rate=0.0)

    async def flood(store: Store) -> list[Ack]:
        stages = TrustedStages(headend, StoreRegistry(store, ca_cert), Anonymizer(b"f" * 32))
        ingest = Ingest(stages, store, clock=NOW.timestamp)
        await ingest.start()
        receiver = TcpReceiver(ingest) if transport == "tcp" else HttpReceiver(ingest)
        port = await receiver.start()
        try:
            if transport == "tcp":
                return await send_frames("127.0.0.1", port, frames, 60)
            async with HttpLink(f"http://127.0.0.1:{port}", max_batch=48) as link:
                return await link.exchange(meter.key.meter_id, frames, 60)
        finally:
            await receiver.stop()
            await ingest.stop()

    with Store.open(db_url, quarantine=limits) as store:
        store.register_meters([record], now=NOW)
        acks = asyncio.run(flood(store))
        assert acks == [Ack.ACCEPTED if f is not GARBAGE else Ack.REJECTED for f in frames]
        assert len(store.originals(meter.key.meter_id, 0, 2**62)) == len(good)
        assert len(store.quarantined(limit=1000)) == 32
        assert store.quarantine_counts == {"dropped": 200 - 32}
        assert store.counters() == {"stored": 40, "malformed": 200}
