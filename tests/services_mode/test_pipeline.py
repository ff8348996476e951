"""The services-mode stages run in one event loop over the in-memory bus, end to end.

Same stages, same sans-IO core as the monolith; here they talk through `MemoryBus`, which
has JetStream's work-queue semantics (redelivery of what is not acknowledged). Meters send
over TCP to the receiver; what ends up in the store must be what the monolith stores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from meterseal.acquisition.headend import HeadEnd, HeadEndSettings
from meterseal.acquisition.stages import StageResult
from meterseal.acquisition.tcp import TcpLink
from meterseal.billing.completeness import Period
from meterseal.billing.tariff import builtin_tariffs
from meterseal.deployment import TrustedMaterial
from meterseal.meter.faults import FaultPlan
from meterseal.meter.simulator import SimulationReport, run_fleet
from meterseal.services.bus import BILL_DONE, BILLING, VERIFIED, MemoryBus
from meterseal.services.frontends import ReceiverService
from meterseal.services.keys import DeploymentKeys
from meterseal.services.messages import BAD_BUS_MESSAGE, BillOrder, BillOutcome, seal_verified
from meterseal.services.workers import AnonymizeStoreWorker, BillingWorker, OpenVerifyWorker
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.services_mode.conftest import Fleet, make_fleet


@contextlib.asynccontextmanager
async def running(fleet: Fleet, store: Store, bus: MemoryBus) -> AsyncIterator[TcpLink]:
    """Receiver, open/verify, anonymize/store and billing on `bus`; yields a link to send."""
    keys = DeploymentKeys(fleet.directory)
    receiver = ReceiverService(bus, HeadEndSettings(tcp="127.0.0.1:0"))
    workers = [
        OpenVerifyWorker(bus, store, fleet.deployment.ca_cert, keys.secrets("open-verify")),
        AnonymizeStoreWorker(bus, store, keys.secrets("anonymize-store")),
        BillingWorker(bus, store, keys.secrets("billing")),
    ]
    host, port = (await receiver.start())["tcp"].rsplit(":", 1)
    for worker in workers:
        await worker.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield TcpLink(host, int(port))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await receiver.stop()


async def settle(store: Store, quiet: float = 0.4) -> None:
    """Until the store's counters stop moving."""
    last: dict[str, int] = {}
    while (now := await asyncio.to_thread(store.counters)) != last or not now:
        last = now
        await asyncio.sleep(quiet)


async def send(fleet: Fleet, store: Store, bus: MemoryBus) -> SimulationReport:
    """The whole wire through the services; returns once everything is settled."""
    async with running(fleet, store, bus) as link:
        report = await run_fleet(fleet.wire, link, concurrency=20, window=16)
        await settle(store)
    return report


def _stored(store: Store, fleet: Fleet) -> dict[tuple[str, int], bytes]:
    return {
        (m.key.meter_id, o.counter): o.signed_original
        for m in fleet.meters
        for o in store.originals(m.key.meter_id, 0, 2**40)
    }


def test_stages_over_the_bus_store_what_the_monolith_stores(tmp_path: Path) -> None:
    services_url = f"sqlite:///{tmp_path / 'services.db'}"
    fleet = make_fleet(tmp_path, services_url, 6, 48, FaultPlan.every_fault(0.05))
    with Store.open(services_url) as store:
        report = asyncio.run(send(fleet, store, MemoryBus()))
        by_services = _stored(store, fleet)
        refused = {q.reason for q in store.quarantined(limit=10_000)}
    monolith_url = f"sqlite:///{tmp_path / 'monolith.db'}"
    with Store.open(monolith_url) as store:
        from meterseal.demo import register

        register(store, fleet.deployment, fleet.meters)

        async def monolith() -> None:
            headend = HeadEnd(
                TrustedMaterial.of(fleet.deployment), store, HeadEndSettings(tcp="127.0.0.1:0")
            )
            host, port = (await headend.start())["tcp"].rsplit(":", 1)
            try:
                await run_fleet(fleet.wire, TcpLink(host, int(port)), concurrency=20, window=16)
            finally:
                await headend.stop()

        asyncio.run(monolith())
        by_monolith = _stored(store, fleet)
        refused_by_monolith = {q.reason for q in store.quarantined(limit=10_000)}
    assert report.unacknowledged == 0
    assert report.sent["wrong_key"]
    assert report.sent["corrupt"]
    assert by_services == by_monolith  # the same readings, with the same signed originals
    assert {"bad_signature"} <= refused <= refused_by_monolith | {"stale_counter"}


def test_a_forged_verified_batch_is_quarantined_and_the_rest_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    fleet = make_fleet(tmp_path, url, 3, 8)
    bus = MemoryBus()

    async def scenario() -> None:
        # Someone with bus access injects a "verified" batch not sealed by a trusted stage.
        await bus.publish(VERIFIED, b"\x00" * 64, msg_id="forged")
        with Store.open(url) as store:
            await send(fleet, store, bus)

    asyncio.run(scenario())
    with Store.open(url) as store:
        assert store.counters()["stored"] == fleet.packets
        assert [q.reason for q in store.quarantined()] == [BAD_BUS_MESSAGE]


def test_a_batch_taken_but_not_acknowledged_comes_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    fleet = make_fleet(tmp_path, url, 1, 1)
    bus = MemoryBus(ack_wait=0.2)
    keys = DeploymentKeys(fleet.directory)

    async def scenario() -> None:
        with Store.open(url) as store:
            blob = seal_verified(
                StageResult(), keys.secrets("open-verify").need_stage_key(), VERIFIED
            )
            await bus.publish(VERIFIED, blob, msg_id="once")
            await bus.publish(VERIFIED, blob, msg_id="once")  # a republish: dropped
            worker = AnonymizeStoreWorker(bus, store, keys.secrets("anonymize-store"))
            await worker.start()
            assert worker.consumer is not None
            first = await worker.consumer.fetch(5, 1.0)
            assert len(first) == 1  # taken, never acked: the worker "died"
            second = await worker.consumer.fetch(5, 1.0)
            assert [(d.sequence, d.attempt) for d in second] == [(first[0].sequence, 2)]
            await second[0].ack()
            assert await worker.consumer.fetch(5, 0.5) == []

    asyncio.run(scenario())


def test_the_billing_service_bills_on_order_once_and_idempotently(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    fleet = make_fleet(tmp_path, url, 2, 192)
    bus = MemoryBus()
    customer = fleet.meters[0].customer_id

    async def scenario(store: Store) -> list[BillOutcome]:
        async with running(fleet, store, bus) as link:
            await run_fleet(fleet.wire, link, concurrency=5, window=16)
            await settle(store)
            day = store.originals(fleet.meters[0].key.meter_id, 0, 2**40)[-1].timestamp // 86_400
            period = Period((day - 1) * 86_400, day * 86_400)
            done = await bus.listen(f"{BILL_DONE}.r1")
            order = BillOrder("r1", customer, period.start, period.end, "example-flat").encode()
            await bus.publish(BILLING, order, msg_id="r1")
            await bus.publish(BILLING, order, msg_id="r1-resent")  # a second, distinct order
            return [BillOutcome.decode(await asyncio.wait_for(done.get(), 20)) for _ in range(2)]

    with Store.open(url) as store:
        BillStore(store).add_tariff(builtin_tariffs().latest("example-flat"), now=fleet.now)
        first, second = asyncio.run(scenario(store))
        assert first.error == ""
        assert first.bill_id.startswith(f"{customer}/")
        # Ordered again (or redelivered after the bill was recorded): the same bill, not a new one.
        assert (second.error, second.bill_id) == ("", first.bill_id)
        assert BillStore(store).bill(first.bill_id) is not None
        assert len(BillStore(store).log_leaves()) == 1
