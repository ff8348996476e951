"""The aggregator service: the receive path closes frames, a releaser spreads their releases."""

from __future__ import annotations

import asyncio
from typing import Any

from meterseal.dissemination.aggregator import AggregationPolicy, Aggregator
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import Publisher
from meterseal.dissemination.runners import RELEASE_SLICE, AggregatorService
from meterseal.dissemination.wire import pairs
from tests.dissemination.conftest import World, reading, seeded

CUSTOMERS = [i.to_bytes(2, "big") * 8 for i in range(2 * RELEASE_SLICE + 50)]


class Recorder:
    """Stands in for a NatsMember: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self.first = asyncio.Event()  # set by the first send

    async def send(self, elements: list[bytes]) -> None:
        self.sent.append(elements)
        self.first.set()

    async def drain(self) -> None:
        return None


def _closing_hour(world: World, spread: float) -> tuple[AggregatorService, Recorder, Any, Any]:
    """A service (releases spread over `spread` s), an hour of readings and the one closing it."""
    headend = world.publisher()
    member = world.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
    aggregator = Aggregator(
        member, Publisher("agg", member.keys, rng=seeded(2)), AggregationPolicy(k=5)
    )
    recorder = Recorder()
    service = AggregatorService(recorder, aggregator, spread=spread)  # type: ignore[arg-type]
    hour = [e for c in CUSTOMERS for q in range(4) for e in reading(headend, c, q * 900, 10)]
    return service, recorder, hour, reading(headend, CUSTOMERS[0], 3 * 3600, 1)


def test_a_closing_hour_is_released_in_slices(world: World) -> None:
    service, recorder, hour, closing = _closing_hour(world, spread=0.3)

    async def scenario() -> int:
        await service.deliver(hour)
        await service.deliver(closing)  # the hour closes: nothing is sealed on this path
        assert recorder.sent == []
        assert service.pending == len(CUSTOMERS) + 1  # and one region, at most
        while service.pending:
            await asyncio.sleep(0.01)
        await service.finish(flush=False)
        return service.released

    assert asyncio.run(scenario()) == len(CUSTOMERS) + 1
    slices = [len(elements) // 2 for elements in recorder.sent]
    assert slices == [RELEASE_SLICE, RELEASE_SLICE, 51]
    assert service.pending == 0
    utility = world.join("utility1", Role.UTILITY, (PrivacyLevel.MODERATE, ""))
    items = [i for elements in recorder.sent for i in pairs(elements)]
    opened = [utility.open(i) for i in items]
    loads = [d for d in opened if d.header.level is PrivacyLevel.MODERATE]
    assert len(loads) == len(CUSTOMERS)
    assert {d.values["wh"] for d in loads} == {40}


def test_the_slices_after_the_first_wait_for_their_share_of_the_spread(world: World) -> None:
    service, recorder, hour, closing = _closing_hour(world, spread=3600.0)

    async def scenario() -> None:
        await service.deliver(hour)
        await service.deliver(closing)
        await asyncio.wait_for(recorder.first.wait(), 30)
        for _ in range(50):  # the releaser gets every chance to send more, were it not waiting
            await asyncio.sleep(0)
        assert len(recorder.sent) == 1
        assert service.pending == RELEASE_SLICE + 51
        await service.finish(flush=False)  # hurries: the rest goes now

    asyncio.run(scenario())
    assert [len(elements) // 2 for elements in recorder.sent] == [RELEASE_SLICE, RELEASE_SLICE, 51]


def test_finish_sends_what_is_queued_at_once(world: World) -> None:
    headend = world.publisher()
    member = world.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
    aggregator = Aggregator(
        member, Publisher("agg", member.keys, rng=seeded(3)), AggregationPolicy(k=5)
    )
    recorder = Recorder()
    service = AggregatorService(recorder, aggregator, spread=3600.0)  # type: ignore[arg-type]

    async def scenario() -> None:
        await service.deliver([e for c in CUSTOMERS for e in reading(headend, c, 0, 10)])
        await service.deliver(reading(headend, CUSTOMERS[0], 3 * 3600, 1))
        # The queued hour, then the open one; waiting out the hour-long spread would hang here.
        await asyncio.wait_for(service.finish(flush=True), 60)

    asyncio.run(scenario())
    assert service.released == len(CUSTOMERS) + 1 + 1  # then one customer; k withholds LOW


def test_the_aggregator_reports_late_readings_while_it_runs(world: World) -> None:
    from meterseal.dissemination.runners import progress_line
    from meterseal.dissemination.service import AggregatorStage

    headend = world.publisher()
    member = world.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
    lines: list[str] = []
    stage = AggregatorStage(
        member, AggregationPolicy(k=1, lateness=900), world.attester, None,  # type: ignore[arg-type]
        "nats://unused", "ns", report=lines.append, report_every=0.01,
    )  # fmt: skip
    # A meter's whole day first, then another's: the second's first hours are late.
    day = [e for q in range(96) for e in reading(headend, CUSTOMERS[0], q * 900, 10)]
    second = [e for q in range(8) for e in reading(headend, CUSTOMERS[1], q * 900, 10)]

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(stage.run(stop))
        await asyncio.sleep(0)  # run() takes its first counts: nothing yet
        stage.aggregator.consume(day)
        stage.aggregator.aggregation.closing()
        stage.aggregator.consume(second)
        for _ in range(3000):  # a report every 0.01 s: at most seconds, even under load
            if any("warning" in line for line in lines):
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(scenario())
    assert "104 readings in, 8 dropped as late" in lines[-1]
    assert "late by more than the window" in lines[-1]
    metrics = stage.metrics.exposition().decode()
    assert 'meterseal_dissemination_total{kind="late"} 8.0' in metrics
    quiet = {"readings": 5, "late": 0, "released": 2}
    assert progress_line(quiet, quiet, 900) is None  # nothing moved: no line
    assert "warning" not in (progress_line({}, quiet, 900) or "")
