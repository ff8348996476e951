"""The aggregator service: the receive path closes frames, a releaser spreads their releases."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from meterseal.dissemination.aggregator import AggregationPolicy, Aggregator
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import Publisher
from meterseal.dissemination.runners import RELEASE_SLICE, AggregatorService
from meterseal.dissemination.wire import pairs
from tests.dissemination.conftest import World, reading, seeded

CUSTOMERS = [i.to_bytes(2, "big") * 8 for i in range(2 * RELEASE_SLICE + 50)]


class Recorder:
    """Stands in for a NatsMember: keeps what was sent, and when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, list[bytes]]] = []

    async def send(self, elements: list[bytes]) -> None:
        self.sent.append((time.monotonic(), elements))

    async def drain(self) -> None:
        return None


def test_a_closing_hour_is_released_in_slices_spread_over_time(world: World) -> None:
    headend = world.publisher()
    member = world.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
    aggregator = Aggregator(
        member, Publisher("agg", member.keys, rng=seeded(2)), AggregationPolicy(k=5)
    )
    recorder = Recorder()
    service = AggregatorService(recorder, aggregator, spread=0.3)  # type: ignore[arg-type]
    hour = [e for c in CUSTOMERS for q in range(4) for e in reading(headend, c, q * 900, 10)]
    closing = reading(headend, CUSTOMERS[0], 3 * 3600, 1)

    async def scenario() -> tuple[int, float]:
        await service.deliver(hour)
        started = time.monotonic()
        await service.deliver(closing)  # the hour closes: nothing is sealed on this path
        assert recorder.sent == []
        assert service.pending == len(CUSTOMERS) + 1  # and one region, at most
        while service.pending:
            await asyncio.sleep(0.01)
        await service.finish(flush=False)
        return service.released, started

    released, started = asyncio.run(scenario())
    assert released == len(CUSTOMERS) + 1
    slices = [len(elements) // 2 for _, elements in recorder.sent]
    assert slices == [RELEASE_SLICE, RELEASE_SLICE, 51]
    assert service.pending == 0
    # Spread: the slices went out over the spread, not at once.
    assert recorder.sent[-1][0] - started >= 0.1
    utility = world.join("utility1", Role.UTILITY, (PrivacyLevel.MODERATE, ""))
    items = [i for _, elements in recorder.sent for i in pairs(elements)]
    opened = [utility.open(i) for i in items]
    loads = [d for d in opened if d.header.level is PrivacyLevel.MODERATE]
    assert len(loads) == len(CUSTOMERS)
    assert {d.values["wh"] for d in loads} == {40}


def test_finish_sends_what_is_queued_at_once(world: World) -> None:
    headend = world.publisher()
    member = world.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
    aggregator = Aggregator(
        member, Publisher("agg", member.keys, rng=seeded(3)), AggregationPolicy(k=5)
    )
    recorder = Recorder()
    service = AggregatorService(recorder, aggregator, spread=30.0)  # type: ignore[arg-type]

    async def scenario() -> Any:
        await service.deliver([e for c in CUSTOMERS for e in reading(headend, c, 0, 10)])
        await service.deliver(reading(headend, CUSTOMERS[0], 3 * 3600, 1))
        started = time.monotonic()
        await service.finish(flush=True)  # the queued hour, then the open one
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 10  # not the 30 s spread
    assert service.released == len(CUSTOMERS) + 1 + 1  # then one customer; k withholds LOW
