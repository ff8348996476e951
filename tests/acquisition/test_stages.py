"""The trusted stages on batches: accepted readings carry a pseudonym, rejections one reason."""

from __future__ import annotations

import os

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.freshness import FreshnessPolicy
from meterseal.acquisition.records import StoreOutcome
from meterseal.acquisition.stages import Incoming, TrustedStages
from meterseal.crypto import packet
from meterseal.crypto.suites import P256
from meterseal.model import Reading
from tests.conftest import NOW, World

T = NOW.timestamp()


def _packet(world: World, counter: int, timestamp: int | None = None) -> bytes:
    key = world.meters["p256"]
    ts = int(T) - 900 if timestamp is None else timestamp
    reading = Reading(key.meter_id, counter, ts, 900, 100 + counter)
    return packet.seal(reading, key, world.headend.public(), P256, now=NOW, rng=os.urandom)


def _stages(world: World) -> TrustedStages:
    return TrustedStages(
        world.headend, world.registry, Anonymizer(b"a" * 32), FreshnessPolicy(window=8)
    )


def test_batch_keeps_arrival_order_and_reasons(world: World) -> None:
    stages = _stages(world)
    batch = [
        Incoming(_packet(world, 1), T, "tcp:1"),
        Incoming(b"garbage", T, "tcp:2"),
        Incoming(_packet(world, 2, timestamp=int(T) + 3600), T, "tcp:1"),
        Incoming(_packet(world, 3), T, "tcp:1"),
    ]
    result = stages.process(batch, now=T)
    assert [r.counter for r in result.accepted] == [1, 3]
    assert [r.reason for r in result.rejected] == ["malformed", "future_timestamp"]
    assert result.order == [0, -1, -2, 1]
    assert result.rejected[0].source == "tcp:2"
    accepted = result.accepted[0]
    assert accepted.region_id == "R01"
    assert accepted.pseudonym == Anonymizer(b"a" * 32).pseudonym(accepted.meter_id)
    assert accepted.energy_wh == 101
    assert stages.counts == {"malformed": 1, "future_timestamp": 1}


def test_store_outcomes_drive_freshness_and_counters(world: World) -> None:
    stages = _stages(world)
    result = stages.process([Incoming(_packet(world, c), T, "x") for c in (20, 21, 22)], now=T)
    stages.stored(
        result.accepted, [StoreOutcome.STORED, StoreOutcome.DUPLICATE, StoreOutcome.CONFLICT]
    )
    assert stages.state.highest(world.meters["p256"].meter_id) == 21
    assert stages.counts == {"stored": 1, "duplicate": 1, "replayed_counter": 1}
    stale = stages.process([Incoming(_packet(world, 13), T, "x")], now=T)
    assert [r.reason for r in stale.rejected] == ["stale_counter"]
