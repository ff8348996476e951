"""The parallel opener gives the verdicts of `open_batch`, also after the registry changed."""

from __future__ import annotations

import os

import pytest

from meterseal.acquisition import parallel
from meterseal.acquisition.parallel import ParallelOpener
from meterseal.crypto import packet
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import ED25519, P256
from meterseal.errors import InvalidPacket
from meterseal.meter.faults import flip_bit
from meterseal.model import Reading
from tests.conftest import NOW, World

T = int(NOW.timestamp())


class VersionedRegistry(MeterRegistry):
    """A MeterRegistry with the `generation` that StoreRegistry keeps."""

    generation = 0


def _verdict(result: packet.OpenedPacket | InvalidPacket) -> object:
    if isinstance(result, InvalidPacket):
        return result.reason
    return (result.reading, result.meter.meter_id, result.suite.name, result.signed_original)


@pytest.mark.parametrize("parent_opens", [True, False])
def test_parallel_opener_matches_open_batch_across_registry_changes(
    world: World, parent_opens: bool
) -> None:
    import random

    registry = VersionedRegistry(world.ca_cert)
    for record in world.registry:
        registry.register(record.certificate, record.suite, record.customer_id, record.region_id)
    keys = [world.meters["p256"], world.meters["ed25519"]]
    blobs = [
        packet.seal(
            Reading(k.meter_id, c, T - 900, 900, c),
            k,
            world.headend.public(),
            k.suite,
            now=NOW,
            rng=os.urandom,
        )
        for c in range(1, 60)
        for k in keys
    ]
    rng = random.Random(4)
    blobs[3] = flip_bit(blobs[3], rng)
    blobs[10] = b"\xa0garbage"
    opener = ParallelOpener(world.headend, registry, 2, parent_opens=parent_opens)
    try:
        expected = [_verdict(r) for r in packet.open_batch(blobs, world.headend, registry, now=NOW)]
        assert [_verdict(r) for r in opener.open_batch(blobs, NOW)] == expected

        # After the fork: a new meter appears, and a known one is revoked.
        newcomer = World(world.ca_key, world.ca_cert, world.headend, registry, {}).add_meter(
            "M-late", P256
        )
        registry.generation += 1
        registry.revoke(keys[1].meter_id, now=NOW)
        late = [
            packet.seal(
                Reading("M-late", c, T - 900, 900, c),
                newcomer,
                world.headend.public(),
                P256,
                now=NOW,
                rng=os.urandom,
            )
            for c in range(1, 40)
        ]
        mixed = blobs + late
        expected = [_verdict(r) for r in packet.open_batch(mixed, world.headend, registry, now=NOW)]
        got = [_verdict(r) for r in opener.open_batch(mixed, NOW)]
        assert got == expected
        # Every ed25519 packet but the bit-flipped one (index 3), refused by the parent.
        assert got.count("revoked_meter") == 58
        assert sum(1 for g in got if isinstance(g, tuple) and g[1] == "M-late") == 39
        assert ED25519.name not in {g[2] for g in got if isinstance(g, tuple)}
    finally:
        opener.close()


def test_the_parent_opens_a_slice_only_while_workers_are_fewer_than_cores(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "_cores", lambda: 2)
    for workers, parent_opens in ((1, True), (2, False)):
        opener = ParallelOpener(world.headend, world.registry, workers)
        try:
            assert opener.parent_opens is parent_opens
        finally:
            opener.close()
