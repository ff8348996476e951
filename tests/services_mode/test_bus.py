"""Both buses keep the same promises: durable publish, one worker per message, redelivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from meterseal.services.bus import PACKETS, Bus, Delivery, MemoryBus

BusFactory = Callable[[float], Coroutine[Any, Any, Bus]]


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.services)])
def make_bus(request: pytest.FixtureRequest) -> BusFactory:
    """A factory of connected buses of one kind (NATS ones share this test's prefix)."""
    if request.param == "memory":
        shared: list[MemoryBus] = []

        async def memory(ack_wait: float) -> Bus:
            if not shared:
                shared.append(MemoryBus(ack_wait))
            return shared[0]

        return memory
    url, prefix = request.getfixturevalue("nats_url"), request.getfixturevalue("prefix")

    async def nats(ack_wait: float) -> Bus:
        from meterseal.services.nats_bus import NatsBus

        return await NatsBus.connect(url, ack_wait=ack_wait, prefix=prefix)

    return nats


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 30))


def test_each_message_goes_to_one_worker_and_acked_ones_never_return(make_bus: BusFactory) -> None:
    async def scenario() -> None:
        bus = await make_bus(5.0)
        for i in range(20):
            await bus.publish(PACKETS, f"m{i}".encode(), msg_id=f"id{i}")
        first = await bus.consumer(PACKETS, "stage")
        second = await bus.consumer(PACKETS, "stage")
        a = await first.fetch(10, 2.0)
        for delivery in a:
            await delivery.ack()
        # A JetStream pull may hand over part of a batch, and messages the server sent to a
        # pull request the client stopped waiting for come back after ack_wait (5 s): fetch,
        # acking as we go, until all 20 are in or ack_wait has passed twice.
        b: list[Delivery] = []
        deadline = time.monotonic() + 10.0
        while len(a) + len(b) < 20 and time.monotonic() < deadline:
            more = await second.fetch(20, 1.0)
            for delivery in more:
                await delivery.ack()
            b += more
        got = [d.data for d in [*a, *b]]
        assert sorted(got) == sorted(f"m{i}".encode() for i in range(20))  # each exactly once
        assert await first.fetch(5, 0.5) == []
        await bus.close()

    run(scenario())


def test_a_republished_message_id_is_dropped(make_bus: BusFactory) -> None:
    async def scenario() -> None:
        bus = await make_bus(5.0)
        await bus.publish(PACKETS, b"once", msg_id="same")
        await bus.publish(PACKETS, b"once", msg_id="same")
        consumer = await bus.consumer(PACKETS, "stage")
        got = await consumer.fetch(5, 1.0)
        assert [d.data for d in got] == [b"once"]
        await got[0].ack()
        await bus.close()

    run(scenario())


def test_unacknowledged_and_nakked_messages_are_redelivered(make_bus: BusFactory) -> None:
    async def scenario() -> None:
        bus = await make_bus(1.0)
        await bus.publish(PACKETS, b"lost", msg_id="lost")
        await bus.publish(PACKETS, b"refused", msg_id="refused")
        consumer = await bus.consumer(PACKETS, "stage")
        taken = await consumer.fetch(2, 2.0)
        assert len(taken) == 2
        nakked = next(d for d in taken if d.data == b"refused")
        await nakked.nak()
        again = await consumer.fetch(1, 2.0)
        assert [(d.data, d.attempt) for d in again] == [(b"refused", 2)]
        await again[0].ack()
        late = await consumer.fetch(1, 3.0)  # "lost" was never acked: back after ack_wait
        assert [(d.data, d.attempt) for d in late] == [(b"lost", 2)]
        await late[0].ack()
        await bus.close()

    run(scenario())


def test_notifications_reach_current_listeners(make_bus: BusFactory) -> None:
    async def scenario() -> None:
        bus = await make_bus(5.0)
        inbox = await bus.listen("ms.test.done")
        await bus.notify("ms.test.done", b"hello")
        assert await asyncio.wait_for(inbox.get(), 5) == b"hello"
        await bus.close()

    run(scenario())
