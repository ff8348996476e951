"""Bulk provisioning: identities chain to the CA, spread over regions, survive the fleet file."""

from __future__ import annotations

import os
from pathlib import Path

from meterseal.crypto import packet
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import ED25519, P256
from meterseal.meter.provisioning import load_fleet, provision, register_fleet, save_fleet
from meterseal.model import Reading
from tests.conftest import NOW, World


def test_provisioned_fleet_round_trips_through_its_file(tmp_path: Path, world: World) -> None:
    meters = provision(world.ca_key, world.ca_cert, 1200, P256, now=NOW, regions=4)
    assert len({m.key.meter_id for m in meters}) == 1200
    assert {m.region_id for m in meters} == {"R01", "R02", "R03", "R04"}
    path = tmp_path / "fleet.cbor"
    save_fleet(path, meters)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_fleet(path)
    assert [m.key.meter_id for m in loaded] == [m.key.meter_id for m in meters]
    registry = MeterRegistry(world.ca_cert)
    register_fleet(registry, loaded)
    meter = loaded[1100]
    blob = packet.seal(
        Reading(meter.key.meter_id, 1, 2, 900, 5),
        meter.key,
        world.headend.public(),
        P256,
        now=NOW,
        rng=os.urandom,
    )
    opened = packet.open(blob, world.headend, registry, now=NOW)
    assert opened.meter.region_id == meter.region_id


def test_single_worker_provisioning_matches(world: World) -> None:
    meters = provision(world.ca_key, world.ca_cert, 3, ED25519, now=NOW, prefix="X", workers=1)
    assert [m.key.meter_id for m in meters] == ["X-000001", "X-000002", "X-000003"]
