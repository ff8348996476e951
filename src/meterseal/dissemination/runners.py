"""Members as long-running NATS processes: the aggregator, and the head-end's stored stream.

What `meterseal router aggregate` and `meterseal router publish` run; the bench hosts the
same pieces in its own processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from meterseal.dissemination.aggregator import Aggregator, Closing, CustomerLoad, RegionalLoad
from meterseal.dissemination.feed import Anonymized, publish_accepted
from meterseal.dissemination.member import Publisher
from meterseal.dissemination.nats_transport import NatsMember

FRAME_ITEMS = 1_000  # publications per frame: NATS caps a message at 1 MiB
RELEASE_SLICE = 500  # releases sealed and sent as one frame, between arriving readings
RELEASE_SPREAD = 1.0  # seconds over which a closing frame's releases are spread
Release = CustomerLoad | RegionalLoad


def now_us() -> int:
    """Wall-clock microseconds (a publication's `at`)."""
    return int(time.time() * 1e6)


@dataclass
class AggregatorService:
    """Feeds deliveries to an Aggregator and publishes its releases, spread out in time.

    A closing hour of 5,000 customers is 5,000 releases to make, seal and route: done at
    once, the readings arriving meanwhile wait for all of them (the latency spikes the bench
    saw). So the receive path only closes the frames (`Aggregation.closing`, instant); a
    releaser task makes, seals and sends their releases in slices of RELEASE_SLICE, spaced
    so that they go out over `spread` seconds, and the readings are handled in between.
    """

    member: NatsMember
    aggregator: Aggregator
    clock: Callable[[], int] = now_us
    spread: float = RELEASE_SPREAD
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._pending: deque[list[Any]] = deque()  # [closing, releases taken so far]
        self.pending = 0  # releases queued, not yet sent (at most: k may withhold some)
        self._deadline = 0.0
        self._releaser: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set by finish: no more spreading
        self.released = 0

    async def deliver(self, elements: list[bytes], published_at: list[int] | None = None) -> None:
        """Consume one flat batch of readings; queue the releases of the frames that closed."""
        self.aggregator.consume(elements, published_at=published_at)
        closing = self.aggregator.aggregation.closing()
        if closing is not None:
            self.queue(closing)

    def queue(self, closing: Closing) -> None:
        """Release what `closing` holds within `spread` seconds (behind what is queued)."""
        self._pending.append([closing, 0])
        self.pending += closing.count
        self._deadline = max(self._deadline, self.monotonic() + self.spread)
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.get_running_loop().create_task(self._release_queued())

    async def _release_queued(self) -> None:
        while self._pending:
            entry = self._pending[0]
            chunk = list(islice(entry[0].releases, RELEASE_SLICE))
            entry[1] += len(chunk)
            self.pending -= len(chunk)
            if len(chunk) < RELEASE_SLICE:  # exhausted: what k withheld never comes
                self._pending.popleft()
                self.pending -= entry[0].count - entry[1]
            if chunk:
                await self.release(chunk)
            if self.pending > 0 and not self._hurry.is_set():  # the rest evenly over the spread
                left = self._deadline - self.monotonic()
                share = RELEASE_SLICE / (self.pending + RELEASE_SLICE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), max(0.0, left * share))

    async def release(self, records: list[Release]) -> None:
        """Seal `records` and send them as one frame."""
        at, seal = self.clock(), self.aggregator.seal
        elements: list[bytes] = []
        for record in records:
            elements += seal(record, at=at)
        await self.member.send(elements)
        self.released += len(records)

    async def finish(self, *, flush: bool) -> None:
        """Send what is queued now; with `flush`, release every open frame too."""
        self._hurry.set()
        if self._releaser is not None:
            await self._releaser
        if flush:
            records = self.aggregator.aggregation.flush()
            for i in range(0, len(records), RELEASE_SLICE):
                await self.release(records[i : i + RELEASE_SLICE])
        await self.member.drain()


def progress_line(before: Mapping[str, int], now: Mapping[str, int], lateness: int) -> str | None:
    """The aggregator's console line when its counts moved since `before` (None if not).

    Late readings are dropped, so they are said at once, with the reason and the remedy:
    a run that loses most of its data must not look like one that works.
    """
    if now == before:
        return None
    late, new_late = now.get("late", 0), now.get("late", 0) - before.get("late", 0)
    line = (
        f"aggregator: {now.get('readings', 0):,} readings in, {late:,} dropped as late, "
        f"{now.get('released', 0):,} releases out"
    )
    refused = sum(v for k, v in now.items() if k.startswith("refused_") or k == "not_a_reading")
    if refused:
        line += f", {refused:,} refused"
    if new_late > 0:
        line += (
            f"\n[yellow]warning:[/yellow] {new_late:,} more readings dropped as late: late by "
            f"more than the window (their frame had closed: a reading {lateness:,} s or more "
            "past its end had arrived). Publish in data-time order or raise --lateness."
        )
    return line


async def publish_readings(
    member: NatsMember, publisher: Publisher, pages: Iterable[list[Any]]
) -> int:
    """Publish pages of anonymized readings as HIGH publications; how many were sent."""
    sent = 0
    for page in pages:
        readings: list[Anonymized] = page
        for i in range(0, len(readings), FRAME_ITEMS):
            chunk = readings[i : i + FRAME_ITEMS]
            elements: list[bytes] = []
            for item in publish_accepted(publisher, chunk, at=now_us()):
                elements += item
            await member.send(elements)
            sent += len(chunk)
    await member.drain()
    return sent
