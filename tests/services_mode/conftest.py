"""Services-mode fixtures: a deployment with a registered fleet, its sealed month, and NATS."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterseal.crypto.suites import P256
from meterseal.demo import register
from meterseal.deployment import Deployment, init_deployment
from meterseal.meter.faults import FaultPlan
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import ProvisionedMeter, provision
from meterseal.meter.workload import Wire, Workload, seal_workload
from meterseal.storage import Store
from tests.services import require_service
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures

NATS_URL = os.environ.get("MS_NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class Fleet:
    """A deployment directory, its meters (registered in `store_url`) and their sealed packets."""

    directory: Path
    deployment: Deployment
    meters: list[ProvisionedMeter]
    wire: Wire
    store_url: str
    now: dt.datetime

    @property
    def packets(self) -> int:
        """How many packets the wire holds."""
        return sum(len(p) for p in self.wire.values())


def wait_stored(fleet: Fleet, seconds: float = 60) -> int:
    """The store's count of stored readings once it reaches the fleet's, or after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        with Store.open(fleet.store_url) as store:
            stored = int(store.counters().get("stored", 0))
        if stored >= fleet.packets or time.monotonic() > deadline:
            return stored
        time.sleep(0.2)


def make_fleet(
    tmp_path: Path, store_url: str, meters: int, intervals: int, faults: FaultPlan | None = None
) -> Fleet:
    """Provision and register `meters` p256 meters and seal `intervals` readings each."""
    now = dt.datetime.now(dt.UTC)
    directory = tmp_path / "deployment"
    deployment = init_deployment(directory, now=now)
    fleet = provision(deployment.ca_key, deployment.ca_cert, meters, P256, now=now, workers=1)
    with Store.open(store_url) as store:
        register(store, deployment, fleet)
    start = (int(now.timestamp()) // INTERVAL - intervals) * INTERVAL
    work = Workload(fleet, deployment.headend.public(), start, intervals, faults or FaultPlan())
    return Fleet(directory, deployment, fleet, seal_workload(work, now=now), store_url, now)


def _probe_nats() -> None:
    async def probe() -> None:
        import nats

        client = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await client.jetstream().account_info()
        finally:
            await client.close()

    asyncio.run(probe())


@pytest.fixture(scope="session")
def nats_url() -> str:
    """MS_NATS_URL once NATS with JetStream answers (skip, or fail when services are required)."""
    require_service("NATS JetStream", NATS_URL, _probe_nats)
    return NATS_URL


@pytest.fixture
def prefix(nats_url: str, unique_name: str) -> Iterator[str]:
    """A stream prefix of this test's own; its streams are deleted afterwards."""
    name = unique_name
    yield name

    async def cleanup() -> None:
        from meterseal.services.nats_bus import NatsBus

        bus = await NatsBus.connect(nats_url, prefix=name)
        try:
            await bus.delete_streams()
        finally:
            await bus.close()

    asyncio.run(cleanup())
