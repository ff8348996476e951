"""Scrub: missing and corrupt blobs are found, rebuilt byte for byte, moved off dead nodes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.errors import KvsError
from meterseal.kvs.nodes import MemoryCatalog
from meterseal.kvs.policy import ErasureCoded, Hybrid, Policy, Replication
from meterseal.kvs.repair import scrub, sweep
from tests.kvs.store_fixtures import SMALL_CHUNK, memory_store

POLICIES: list[Policy] = [Replication(3), ErasureCoded(3, 2), Hybrid(2, 1)]
DATA = bytes(range(256)) * 2  # 8 chunks


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(POLICIES), st.data())
def test_a_corrupted_blob_is_found_and_rebuilt(policy: Policy, data: st.DataObject) -> None:
    store, nodes, _ = memory_store(policy.nodes_needed)

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", DATA, policy)
        node = data.draw(st.sampled_from(nodes))
        blob_id = data.draw(st.sampled_from(sorted(node.blobs)))
        original = node.blobs[blob_id]
        spoiled = bytearray(original)
        spoiled[data.draw(st.integers(0, len(spoiled) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        node.blobs[blob_id] = bytes(spoiled)

        checked = await scrub(store, ["meters"], repair=False)
        assert (checked.corrupt, checked.missing, checked.repaired) == (1, 0, 0)
        assert not checked.healthy
        assert node.blobs[blob_id] == bytes(spoiled)  # a check repairs nothing
        assert await store.get_bytes("meters", "obj") == DATA  # reads go around it

        fixed = await scrub(store, ["meters"])
        assert (fixed.corrupt, fixed.repaired, fixed.unrepaired) == (1, 1, 0)
        assert node.blobs[blob_id] == original  # rebuilt byte for byte, in place
        again = await scrub(store, ["meters"])
        assert (again.corrupt, again.missing, again.repaired) == (0, 0, 0)
        assert again.healthy
        assert again.blobs == checked.blobs == len(store_blobs(nodes))

    asyncio.run(scenario())


def store_blobs(nodes: list) -> list[bytes]:  # type: ignore[type-arg]
    return [blob for node in nodes for blob in node.blobs.values()]


@pytest.mark.parametrize("policy", POLICIES, ids=str)
def test_a_dead_nodes_blobs_move_to_a_spare_node(policy: Policy) -> None:
    store, nodes, _ = memory_store(policy.nodes_needed + 1)

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", DATA, policy)
        await store.put_bytes("meters", "other", DATA[:100], policy)
        dead = max(nodes, key=lambda n: len(n.blobs))
        lost = len(dead.blobs)
        dead.up = False
        report = await scrub(store, ["meters"])
        assert (report.missing, report.repaired, report.unrepaired) == (lost, lost, 0)
        dead.blobs.clear()  # the node is gone for good
        for node in nodes:
            if node is not dead:
                node.up = True
        for other in nodes:  # any further tolerated loss is survived again
            if other is not dead:
                other.up = False
                assert await store.get_bytes("meters", "obj") == DATA
                other.up = True
        assert (await scrub(store, ["meters"])).healthy

    asyncio.run(scenario())


def test_a_chunk_beyond_repair_is_reported() -> None:
    store, nodes, _ = memory_store(3)

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", DATA[:SMALL_CHUNK], ErasureCoded(2, 1))
        nodes[0].blobs.clear()
        nodes[1].blobs.clear()
        report = await scrub(store, ["meters"])
        assert (report.missing, report.repaired, report.unrepaired) == (2, 0, 2)
        assert "meters/obj chunk 0: lost" in report.problems[0]

    asyncio.run(scenario())


def test_with_no_node_to_move_to_the_blob_stays_unrepaired() -> None:
    store, nodes, _ = memory_store(3)

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", DATA[:SMALL_CHUNK], ErasureCoded(2, 1))
        nodes[2].up = False
        report = await scrub(store, ["meters"])
        assert (report.missing, report.repaired, report.unrepaired) == (1, 0, 1)
        assert "no healthy node" in report.problems[0]
        nodes[2].up = True
        assert (await scrub(store, ["meters"])).healthy

    asyncio.run(scenario())


def test_a_sweep_deletes_unreferenced_blobs_after_the_grace_period_only() -> None:
    now = [1000.0]
    store, nodes, _ = memory_store(4)
    store.clock = lambda: now[0]
    store.pool.clock = store.clock
    suspects: dict[tuple[str, str], float] = {}

    async def scenario() -> None:
        await store.put_bytes("meters", "a", DATA, ErasureCoded(2, 1))
        await store.put_bytes("other", "b", DATA, Replication(2))
        live = {n.name: set(n.blobs) for n in nodes}
        for node in nodes[:3]:  # a crashed writer's leftovers
            node.blobs["deadbeef" + node.name.encode().hex()] = b"left behind"
        nodes[3].up = False  # down: its blobs are not judged
        first = await sweep(store, ["meters", "other"], suspects, grace=60)
        assert (first.suspects, first.deleted) == (3, 0)
        assert len(first.unreachable) == 1
        now[0] += 59
        assert (await sweep(store, ["meters", "other"], suspects, grace=60)).deleted == 0
        now[0] += 1
        nodes[3].up = True
        done = await sweep(store, ["meters", "other"], suspects, grace=60)
        assert (done.deleted, done.suspects) == (3, 0)
        assert {n.name: set(n.blobs) for n in nodes} == live
        assert suspects == {}
        assert await store.get_bytes("meters", "a") == DATA
        assert await store.get_bytes("other", "b") == DATA

    asyncio.run(scenario())


def test_a_manifest_that_does_not_open_stops_a_sweep() -> None:
    store, nodes, _ = memory_store(3)
    suspects: dict[tuple[str, str], float] = {}

    async def scenario() -> None:
        await store.put_bytes("meters", "a", DATA[:10], Replication(3))
        bucket_id = store.keys("meters").bucket_id
        catalog = store.catalog
        assert isinstance(catalog, MemoryCatalog)
        key = next(iter(catalog.entries[bucket_id]))
        catalog.entries[bucket_id][key] = b"garbage" * 10
        with pytest.raises(KvsError, match="sweep stopped"):
            await sweep(store, ["meters"], suspects, grace=0)
        assert all(len(n.blobs) == 1 for n in nodes)

    asyncio.run(scenario())
