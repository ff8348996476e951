"""Ingest's pipeline: acks as soon as a batch is durable, batches committed in order, groups."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
from collections.abc import Sequence

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.records import AcceptedReading, Rejection, StoreOutcome
from meterseal.acquisition.stages import Incoming, TrustedStages
from meterseal.crypto import packet
from meterseal.crypto.packet import OpenedPacket
from meterseal.crypto.suites import P256
from meterseal.errors import InvalidPacket
from meterseal.model import Reading
from tests.conftest import NOW, World

T = NOW.timestamp()


def _incoming(world: World, counters: range) -> list[Incoming]:
    key = world.meters["p256"]
    return [
        Incoming(
            packet.seal(
                Reading(key.meter_id, c, int(T) - 900, 900, 5),
                key,
                world.headend.public(),
                P256,
                now=NOW,
                rng=os.urandom,
            ),
            T,
            "test",
        )
        for c in counters
    ]


class _HeldOpener:
    """Opens like `packet.open_batch`, but holds every batch after the first until released."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.calls = 0
        self.holding = threading.Event()
        self.release = threading.Event()

    def open_batch(
        self, blobs: list[bytes], now: dt.datetime
    ) -> list[OpenedPacket | InvalidPacket]:
        self.calls += 1
        if self.calls > 1:
            self.holding.set()
            self.release.wait(10)
        return packet.open_batch(blobs, self.world.headend, self.world.registry, now=now)


class _HeldSink(MemorySink):
    """A store that holds its first commit until released, and records each commit's size."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def save_batch(
        self, accepted: Sequence[AcceptedReading], rejected: Sequence[Rejection]
    ) -> list[StoreOutcome]:
        if not self.sizes:
            self.entered.set()
            self.release.wait(10)
        self.sizes.append(len(accepted))
        return super().save_batch(accepted, rejected)


def _stages(world: World) -> TrustedStages:
    return TrustedStages(world.headend, world.registry, Anonymizer(b"i" * 32))


def test_a_batch_is_acked_once_durable_while_the_next_one_is_still_in_the_stages(
    world: World,
) -> None:
    async def scenario() -> None:
        opener = _HeldOpener(world)
        stages = _stages(world)
        stages.opener = opener
        sink = MemorySink()
        ingest = Ingest(stages, sink, batch_size=4, clock=lambda: T)
        await ingest.start()
        first = [ingest.enqueue(i) for i in _incoming(world, range(1000, 1004))]
        second = [ingest.enqueue(i) for i in _incoming(world, range(1004, 1008))]
        await asyncio.to_thread(opener.holding.wait, 5)
        # The stage thread holds the second batch; the first is acked all the same.
        assert await asyncio.wait_for(asyncio.gather(*first), 5) == [Ack.ACCEPTED] * 4
        assert not any(f.done() for f in second)
        assert stages.counts["stored"] == 4  # the stages learnt the outcomes before the acks
        assert len(sink.originals) == 4
        opener.release.set()
        assert await asyncio.gather(*second) == [Ack.ACCEPTED] * 4
        await ingest.stop()

    asyncio.run(scenario())


def test_batches_checked_while_the_store_is_busy_are_committed_together_in_order(
    world: World,
) -> None:
    async def scenario() -> None:
        sink = _HeldSink()
        stages = _stages(world)
        ingest = Ingest(stages, sink, batch_size=2, store_depth=2, clock=lambda: T)
        await ingest.start()
        packets = _incoming(world, range(2000, 2006))
        held = [ingest.enqueue(i) for i in packets[:2]]
        await asyncio.to_thread(sink.entered.wait, 5)  # the store thread holds the first batch
        later = [ingest.enqueue(i) for i in packets[2:]]
        while ingest.awaiting_store() < 2:  # both later batches through the stages
            await asyncio.sleep(0.01)
        sink.release.set()
        assert await asyncio.gather(*held, *later) == [Ack.ACCEPTED] * 6
        await ingest.stop()
        assert sink.sizes == [2, 4]  # the two batches checked meanwhile, in one transaction
        assert list(sink.originals) == [
            (world.meters["p256"].meter_id, c) for c in range(2000, 2006)
        ]

    asyncio.run(scenario())


class _FirstHeldOpener:
    """Opens like `packet.open_batch`, but holds the first batch until released."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.calls = 0
        self.lock = threading.Lock()
        self.second = threading.Event()
        self.release = threading.Event()

    def open_batch(
        self, blobs: list[bytes], now: dt.datetime
    ) -> list[OpenedPacket | InvalidPacket]:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.release.wait(10)
        else:
            self.second.set()
        return packet.open_batch(blobs, self.world.headend, self.world.registry, now=now)


def test_with_stage_depth_two_a_full_batch_is_opened_beside_the_first_and_stored_after_it(
    world: World,
) -> None:
    async def scenario() -> None:
        opener = _FirstHeldOpener(world)
        stages = _stages(world)
        stages.opener = opener
        sink = MemorySink()
        ingest = Ingest(stages, sink, batch_size=4, stage_depth=2, clock=lambda: T)
        await ingest.start()
        packets = _incoming(world, range(3000, 3008))
        acks = [ingest.enqueue(i) for i in packets]
        # The second batch is being opened while the first is still held in the stages.
        assert await asyncio.to_thread(opener.second.wait, 5)
        assert not any(f.done() for f in acks)
        opener.release.set()
        assert await asyncio.wait_for(asyncio.gather(*acks), 5) == [Ack.ACCEPTED] * 8
        await ingest.stop()
        # Stored in arrival order although the second batch was through the stages first.
        meter = world.meters["p256"].meter_id
        assert list(sink.originals) == [(meter, c) for c in range(3000, 3008)]

    asyncio.run(scenario())
