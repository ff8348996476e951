"""The bucket registry under concurrent gateways, and the sweep the served gateway runs."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest

from meterseal.errors import KvsError
from meterseal.kvs.gateway_state import GatewayState
from meterseal.kvs.nodes import LocalDirNode, MemoryCatalog, MemoryNode
from meterseal.kvs.policy import Replication, parse_policy
from meterseal.kvs.repair import sweep
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.service import GatewayOptions, StoreLayout
from meterseal.kvs.service_sweep import Sweeper
from meterseal.kvs.store import ObjectStore
from tests.kvs.service_fixtures import OPERATOR, Running, add_key
from tests.kvs.store_fixtures import MASTER, memory_store, seeded


def _gateway(nodes: list[MemoryNode], catalog: MemoryCatalog, seed: int) -> GatewayState:
    store = ObjectStore(
        nodes,
        catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=lambda: 1_780_000_000.0,
        rng=seeded(seed).randbytes,
    )
    return GatewayState(store, parse_policy("rep:1"), Replication(1))


def test_two_gateways_registering_buckets_at_once_lose_neither() -> None:
    async def scenario() -> None:
        _store, nodes, catalog = memory_store(3, yielding=True)  # calls interleave
        east, west = _gateway(nodes, catalog, 1), _gateway(nodes, catalog, 2)
        await asyncio.gather(east.note_bucket("east"), west.note_bucket("west"))
        await asyncio.gather(
            east.set_bucket_policy("east", parse_policy("rep:2")),
            west.set_bucket_policy("north", parse_policy("rep:3")),
        )
        third = _gateway(nodes, catalog, 3)
        assert await third.buckets() == ["east", "north", "west"]
        assert str(await third.bucket_policy("east")) == "rep:2"
        assert str(await third.bucket_policy("west")) == "rep:1"  # the gateway's default

    asyncio.run(scenario())


def test_a_sweep_stops_when_the_catalog_holds_a_bucket_it_was_not_told_of() -> None:
    async def scenario() -> None:
        store, nodes, _catalog = memory_store(3)
        await store.put_bytes("meters", "a", b"a" * 100)
        await store.put_bytes("unregistered", "b", b"b" * 100)
        blobs = sum(len(node.blobs) for node in nodes)
        with pytest.raises(KvsError, match=r"sweep stopped: the catalog holds 1 bucket"):
            await sweep(store, ["meters"], {}, grace=0)
        assert sum(len(node.blobs) for node in nodes) == blobs
        report = await sweep(store, ["meters", "unregistered"], {}, grace=0)
        assert report.deleted == 0

    asyncio.run(scenario())


def test_a_sweeper_round_deletes_what_no_manifest_names_and_counts_it() -> None:
    async def scenario() -> None:
        store, nodes, _catalog = memory_store(3)
        state = GatewayState(store, parse_policy("rep:1"), Replication(1))
        await state.note_bucket("meters")
        await store.put_bytes("meters", "a", b"a" * 100)
        await nodes[0].put("ab" * 16, b"left by a writer that crashed")
        sweeper = Sweeper(store, state, grace=0)
        report = await sweeper.round()
        assert report is not None
        assert report.deleted == 1
        assert sweeper.metrics.deleted._value.get() == 1
        await store.put_bytes("hidden", "b", b"b")  # written elsewhere, not registered yet
        assert await sweeper.round() is None  # stopped, counted, nothing deleted
        assert sweeper.metrics.rounds.labels("stopped")._value.get() == 1
        assert b"".join([p async for p in store.get("meters", "a")]) == b"a" * 100

    asyncio.run(scenario())


def test_the_served_gateway_sweeps_unnamed_blobs_and_exports_the_count(tmp_path: Path) -> None:
    layout = StoreLayout(tmp_path / "kvs", 3)
    key = add_key(layout, OPERATOR)
    options = GatewayOptions(
        tmp_path, "http://unused", layout, "rep:1", "127.0.0.1:0", sweep_every=0.2, sweep_grace=0
    )
    stray = LocalDirNode("node-1", layout.node_dirs()[1])
    running = Running(options)
    with (
        running as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client,
    ):
        assert client.put("/v1/kvs/meters/a", content=b"kept" * 1000).status_code == 201
        asyncio.run(stray.put("cd" * 16, b"a blob no manifest names"))
        path = layout.node_dirs()[1] / "cd" / ("cd" * 16)
        deadline = time.monotonic() + 30
        while path.exists():
            assert time.monotonic() < deadline, "the sweep did not delete the unnamed blob"
            time.sleep(0.1)
        assert client.get("/v1/kvs/meters/a").content == b"kept" * 1000
        metrics = httpx.get(f"{running.admin()}/metrics").text
    swept = re.search(r"^meterseal_kvs_swept_blobs_total (\S+)$", metrics, re.M)
    assert swept is not None
    assert float(swept.group(1)) >= 1
    assert re.search(r'^meterseal_kvs_sweeps_total\{outcome="ok"\} [1-9]', metrics, re.M)


def test_a_gateway_served_in_a_host_process_leaves_its_heap_and_collector_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mallopt's thresholds and gc.freeze are process-wide: only `kvs serve` (own_process) sets
    # them, not a gateway served in a thread of another process (this test run's)
    from meterseal.runtime import heap

    called: list[str] = []

    def hold_freed_memory() -> bool:
        called.append("mallopt")
        return True

    def freeze_startup() -> int:
        called.append("freeze")
        return 0

    monkeypatch.setattr(heap, "hold_freed_memory", hold_freed_memory)
    monkeypatch.setattr(heap, "freeze_startup", freeze_startup)
    options = GatewayOptions(
        tmp_path, "http://unused", StoreLayout(tmp_path / "kvs", 3), "rep:1", "127.0.0.1:0"
    )
    with Running(options):  # ready: past the point where `kvs serve` sets both
        assert called == []
