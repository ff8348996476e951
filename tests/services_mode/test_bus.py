"""Both buses keep the same promises: durable publish, one worker per message, redelivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from meterseal.services.bus import PACKETS, Bus, MemoryBus

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
        # Both workers keep pulling, acking as they go. A JetStream pull may hand over part
        # of a batch, and what arrives after a worker's pull stopped waiting is buffered for
        # that worker's next pull: so each keeps pulling until all 20 are in, well inside
        # ack_wait (5 s), after which the server would redeliver what was not acked.
        got: list[bytes] = []
        deadline = time.monotonic() + 4.0
        while len(got) < 20 and time.monotonic() < deadline:
            for consumer in (first, second):
                taken = await consumer.fetch(10, 0.5)
                for delivery in taken:
                    await delivery.ack()
                got += [d.data for d in taken]
        assert sorted(got) == sorted(f"m{i}".encode() for i in range(20))  # each exactly once
        assert await first.fetch(5, 0.5) == []
        assert await second.fetch(5, 0.5) == []
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
