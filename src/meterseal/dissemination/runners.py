"""Members as long-running NATS processes: the aggregator, and the head-end's stored stream.

What `meterseal router aggregate` and `meterseal router publish` run; the bench hosts the
same pieces in its own processes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from meterseal.dissemination.aggregator import Aggregator, CustomerLoad, RegionalLoad
from meterseal.dissemination.feed import Anonymized, publish_accepted
from meterseal.dissemination.member import Publisher
from meterseal.dissemination.nats_transport import NatsMember

FRAME_ITEMS = 1_000  # publications per frame: NATS caps a message at 1 MiB
RELEASE_SLICE = 250  # releases sealed and sent before yielding to arriving readings
Release = CustomerLoad | RegionalLoad


def now_us() -> int:
    """Wall-clock microseconds (a publication's `at`)."""
    return int(time.time() * 1e6)


@dataclass
class AggregatorService:
    """Feeds deliveries to an Aggregator and publishes its releases, in slices."""

    member: NatsMember
    aggregator: Aggregator
    clock: Callable[[], int] = now_us

    def __post_init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.released = 0

    async def deliver(self, items: list[Any], published_at: list[int] | None = None) -> None:
        """Consume one frame of readings; release whatever frames closed."""
        self.aggregator.consume(items, published_at=published_at)
        due = self.aggregator.aggregation.due()
        if due:
            task = asyncio.get_running_loop().create_task(self.release(due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def release(self, records: list[Release]) -> None:
        """Seal and send releases in slices, yielding between them.

        A closing hour of thousands of customers must not hold up the readings arriving
        meanwhile.
        """
        for i in range(0, len(records), RELEASE_SLICE):
            at = self.clock()
            chunk = records[i : i + RELEASE_SLICE]
            await self.member.send([self.aggregator.seal(r, at=at) for r in chunk])
            self.released += len(chunk)
            await asyncio.sleep(0)

    async def finish(self, *, flush: bool) -> None:
        """Wait for releases in flight; with `flush`, release every open frame too."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks))
        if flush:
            await self.release(self.aggregator.aggregation.flush())
        await self.member.drain()


async def publish_readings(
    member: NatsMember, publisher: Publisher, pages: Iterable[list[Any]]
) -> int:
    """Publish pages of anonymized readings as HIGH publications; how many were sent."""
    sent = 0
    for page in pages:
        readings: list[Anonymized] = page
        for i in range(0, len(readings), FRAME_ITEMS):
            chunk = readings[i : i + FRAME_ITEMS]
            await member.send(publish_accepted(publisher, chunk, at=now_us()))
            sent += len(chunk)
    await member.drain()
    return sent


async def until_signalled() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
