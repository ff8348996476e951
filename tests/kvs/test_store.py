"""The store engine: round trips of every policy, node losses, clean failures, listing."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.errors import KvsError, ObjectNotFound
from meterseal.kvs import store_read
from meterseal.kvs.nodes import MemoryCatalog, MemoryNode, MirrorSet
from meterseal.kvs.policy import ErasureCoded, Hybrid, Policy, Replication, raw_bytes
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.store import READ_AHEAD, ObjectStore
from tests.kvs.store_fixtures import MASTER, SMALL_CHUNK, memory_store, pieces, seeded

POLICIES: list[Policy] = [
    Replication(1),
    Replication(3),
    ErasureCoded(2, 1),
    ErasureCoded(3, 2),
    Hybrid(2, 1),
    Hybrid(3, 2),
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(POLICIES),
    st.binary(max_size=5 * SMALL_CHUNK + 7),
    st.lists(st.integers(1, 200), max_size=4),
    st.integers(0, 400),
    st.integers(0, 400),
)
def test_every_policy_round_trips_objects_and_ranges(
    policy: Policy, data: bytes, cuts: list[int], a: int, b: int
) -> None:
    store, nodes, _ = memory_store()
    start, end = sorted((min(a, len(data)), min(b, len(data))))

    async def scenario() -> None:
        info = await store.put("meters", "obj", pieces(data, cuts), policy)
        assert (info.size, info.version, info.policy) == (len(data), 1, policy)
        assert await store.get_bytes("meters", "obj") == data
        assert await store.get_bytes("meters", "obj", start, end) == data[start:end]
        assert await store.get_bytes("meters", "obj", start) == data[start:]

    asyncio.run(scenario())
    stored = sum(len(blob) for node in nodes for blob in node.blobs.values())
    assert stored == raw_bytes(policy, len(data), SMALL_CHUNK)


LOSSES = [(Replication(3), 2), (ErasureCoded(3, 2), 2), (Hybrid(2, 1), 2), (Hybrid(3, 2), 3)]


@pytest.mark.parametrize(("policy", "lost"), LOSSES, ids=[str(p) for p, _ in LOSSES])
def test_reads_survive_any_tolerated_node_losses_mid_stream(policy: Policy, lost: int) -> None:
    assert policy.tolerates == lost
    data = bytes(range(256)) * 3  # 12 chunks of 64 bytes
    store, nodes, _ = memory_store(policy.nodes_needed)

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", data, policy)
        for down in itertools.combinations(nodes, lost):
            stream = store.get("meters", "obj")
            first = await anext(stream)  # the nodes die after the first chunk went out
            for node in down:
                node.up = False
            assert first + b"".join([p async for p in stream]) == data
            assert await store.get_bytes("meters", "obj", 100, 300) == data[100:300]
            for node in down:
                node.up = True
        for node in nodes[: lost + 1]:
            node.up = False
        with pytest.raises(KvsError, match="too few intact blobs"):
            await store.get_bytes("meters", "obj")

    asyncio.run(scenario())


@pytest.mark.parametrize("policy", POLICIES[1:], ids=str)
def test_a_write_with_too_few_healthy_nodes_fails_clearly_and_leaves_nothing(
    policy: Policy,
) -> None:
    store, nodes, catalog = memory_store(policy.nodes_needed)
    nodes[1].up = False

    async def scenario() -> None:
        with pytest.raises(KvsError) as failure:
            await store.put_bytes("meters", "obj", b"x" * 500, policy)
        message = failure.value.diagnostics()
        assert f"policy {policy} needs {policy.nodes_needed} healthy nodes" in message
        assert (
            f"{policy.nodes_needed - 1} of {policy.nodes_needed} are healthy (down: n1)" in message
        )
        assert "nothing kept" in message
        assert await store.head("meters", "obj") is None

    asyncio.run(scenario())
    assert all(node.blobs == {} for node in nodes)
    assert catalog.entries == {}


class DiesAfter:
    """A source whose node n2 dies after `chunks` chunks went out."""

    def __init__(self, node_to_kill: object, chunks: int) -> None:
        self.node = node_to_kill
        self.chunks = chunks

    async def __call__(self) -> AsyncIterator[bytes]:
        for i in range(8):
            if i == self.chunks:
                self.node.up = False  # type: ignore[attr-defined]
            yield bytes([i]) * SMALL_CHUNK


@pytest.mark.parametrize("policy", [Replication(3), ErasureCoded(2, 1), Hybrid(2, 1)], ids=str)
def test_a_node_dying_mid_write_fails_it_and_leaves_nothing(policy: Policy) -> None:
    store, nodes, _ = memory_store(policy.nodes_needed)

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", b"old content", policy)
        before = {n.name: dict(n.blobs) for n in nodes}
        with pytest.raises(KvsError, match=r"writing meters/obj failed, nothing kept: node n2"):
            await store.put("meters", "obj", DiesAfter(nodes[2], 3)(), policy)
        nodes[2].up = True
        assert await store.collect() == 0  # what the dead node kept goes when it is back
        assert {n.name: dict(n.blobs) for n in nodes} == before
        assert await store.get_bytes("meters", "obj") == b"old content"

    asyncio.run(scenario())


def test_put_streams_chunk_by_chunk() -> None:
    store, nodes, _ = memory_store(3)

    async def source() -> AsyncIterator[bytes]:
        for i in range(10):
            stored = sum(len(n.blobs) for n in nodes)
            # at most four chunks in flight: one being received, two sealed, one stored
            assert stored >= 3 * max(0, i - 4), "chunks are written while the source streams"
            yield bytes([i]) * SMALL_CHUNK

    async def scenario() -> None:
        info = await store.put("meters", "big", source(), ErasureCoded(2, 1))
        assert info.size == 10 * SMALL_CHUNK
        stream = store.get("meters", "big")
        assert await anext(stream) == b"\x00" * SMALL_CHUNK
        await stream.aclose()

    asyncio.run(scenario())


def test_overwrite_head_delete_and_missing_objects() -> None:
    store, nodes, catalog = memory_store()

    async def scenario() -> None:
        await store.put_bytes("meters", "a", b"one", ErasureCoded(2, 1))
        info = await store.put_bytes("meters", "a", b"two!", Replication(2))
        assert (info.version, info.size) == (2, 4)
        assert sum(len(n.blobs) for n in nodes) == 2  # the first version's blobs are gone
        assert await store.head("meters", "a") == info
        with pytest.raises(ObjectNotFound):
            await store.get_bytes("other", "a")
        with pytest.raises(KvsError, match="outside"):
            await store.get_bytes("meters", "a", 5)
        assert await store.delete("meters", "a")
        assert not await store.delete("meters", "a")
        assert await store.head("meters", "a") is None
        with pytest.raises(KvsError, match="name"):
            await store.put_bytes("meters", "", b"")

    asyncio.run(scenario())
    assert all(n.blobs == {} for n in nodes)
    assert all(entries == {} for entries in catalog.entries.values())


def test_list_pages_in_name_order_by_prefix() -> None:
    store, _, catalog = memory_store()
    names = ["b/2", "a/1", "b/10", "b/1", "c", "b/3"]

    async def scenario() -> None:
        for name in names:
            await store.put_bytes("meters", name, name.encode())
        await store.put_bytes("other", "b/9", b"elsewhere")
        seen, after = [], ""
        while True:
            page = await store.list("meters", prefix="b/", after=after, limit=2)
            seen += [o.name for o in page.objects]
            if page.next_after is None:
                break
            after = page.next_after
        assert seen == ["b/1", "b/10", "b/2", "b/3"]
        everything = await store.list("meters")
        assert [o.name for o in everything.objects] == sorted(names)
        assert everything.next_after is None
        bucket_id = store.keys("meters").bucket_id
        key = store.keys("meters").catalog_key("c")
        catalog.entries[bucket_id][key] = catalog.entries[bucket_id][key][:-1] + b"\x00"
        assert "c" not in [o.name for o in (await store.list("meters")).objects]

    asyncio.run(scenario())


class Gated(MemoryNode):
    """A MemoryNode answering as many reads as the shared budget allows, then none."""

    def __init__(self, name: str, budget: list[int]) -> None:
        super().__init__(name)
        self.budget = budget

    async def get(self, blob_id: str) -> bytes | None:
        if self.budget[0] <= 0:
            await asyncio.Event().wait()  # a read-ahead stuck on a slow node
        self.budget[0] -= 1
        return await super().get(blob_id)


def test_a_closed_read_leaves_no_read_ahead_running() -> None:
    budget = [10**6]
    nodes = [Gated(f"g{i}", budget) for i in range(3)]
    store = ObjectStore(
        nodes,
        MemoryCatalog(),
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=lambda: 1_780_000_000.0,
        rng=seeded(7).randbytes,
        chunk_size=SMALL_CHUNK,
    )

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", b"z" * SMALL_CHUNK * 5, Replication(2))
        budget[0] = 1  # the first chunk's copy; the chunks read ahead wait
        stream = store.get("meters", "obj")
        assert await anext(stream) == b"z" * SMALL_CHUNK
        assert len(asyncio.all_tasks()) == 1 + READ_AHEAD  # this one and the reads ahead
        await stream.aclose()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(scenario())


def test_replication_uses_a_replica_set_of_as_many_copies() -> None:
    members = [MemoryNode(f"m{i}") for i in range(3)]
    store, nodes, _ = memory_store(3)
    store = ObjectStore(
        nodes,
        store.catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=store.clock,
        rng=store.rng,
        replica_sets=[MirrorSet("rep3", members)],
        chunk_size=SMALL_CHUNK,
    )
    data = bytes(range(200))

    async def scenario() -> None:
        await store.put_bytes("meters", "three", data, Replication(3))
        await store.put_bytes("meters", "two", data, Replication(2))
        manifest = await store.load(store.keys("meters"), "three")
        assert manifest is not None
        assert {b.node for b in manifest.blobs()} == {"rep3"}
        assert all(len(c.replicas) == 1 for c in manifest.chunks)
        assert all(len(m.blobs) == 4 for m in members)  # one blob per chunk on each member
        assert sum(len(n.blobs) for n in nodes) == 2 * 4  # rep:2 went to the plain nodes
        members[0].up = members[1].up = False
        assert await store.get_bytes("meters", "three") == data
        members[2].up = False
        nodes[0].up = nodes[1].up = nodes[2].up = True
        with pytest.raises(KvsError):
            await store.get_bytes("meters", "three")

    asyncio.run(scenario())


class Counting(MemoryNode):
    """A MemoryNode counting how often it is asked whether it is healthy."""

    asked = 0

    async def healthy(self) -> bool:
        """Count, then answer."""
        self.asked += 1
        return await super().healthy()


def test_health_answers_are_kept_for_the_ttl_and_dropped_on_a_failed_write() -> None:
    now = [100.0]
    nodes = [Counting(f"c{i}") for i in range(3)]
    store = ObjectStore(
        nodes,
        MemoryCatalog(),
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=lambda: now[0],
        rng=seeded().randbytes,
        chunk_size=SMALL_CHUNK,
        health_ttl=5.0,
    )

    async def scenario() -> None:
        for i in range(3):
            await store.put_bytes("meters", f"o{i}", b"x", Replication(3))
        assert [n.asked for n in nodes] == [1, 1, 1]
        now[0] += 5.0
        await store.put_bytes("meters", "o", b"x", Replication(3))
        assert [n.asked for n in nodes] == [2, 2, 2]
        nodes[1].up = False  # within the ttl: the write is tried, fails cleanly
        with pytest.raises(KvsError, match="node c1 failed"):
            await store.put_bytes("meters", "p", b"x", Replication(3))
        with pytest.raises(KvsError, match=r"needs 3 healthy nodes; 2 of 3 are healthy \(down: c1"):
            await store.put_bytes("meters", "p", b"x", Replication(3))

    asyncio.run(scenario())


def test_a_failing_or_cancelled_source_leaves_nothing() -> None:
    store, nodes, catalog = memory_store(3, yielding=True)
    started = asyncio.Event()

    async def failing() -> AsyncIterator[bytes]:
        for i in range(4):
            yield bytes([i]) * SMALL_CHUNK
        raise ConnectionResetError("client went away")

    async def endless() -> AsyncIterator[bytes]:
        while True:
            started.set()
            yield b"e" * SMALL_CHUNK

    async def scenario() -> None:
        with pytest.raises(ConnectionResetError):
            await store.put("meters", "obj", failing(), ErasureCoded(2, 1))
        task = asyncio.create_task(store.put("meters", "obj", endless(), ErasureCoded(2, 1)))
        await started.wait()
        while sum(len(n.blobs) for n in nodes) < 9:  # a few chunks are on the nodes
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert all(node.blobs == {} for node in nodes)
    assert catalog.entries == {}


class RefusingCatalog(MemoryCatalog):
    """A catalog that refuses puts while `refuse` is set."""

    refuse = False

    async def put(self, bucket_id: str, key: str, sealed: bytes) -> None:
        """Refuse or keep."""
        if self.refuse:
            raise KvsError("catalog unavailable")
        await super().put(bucket_id, key, sealed)


def test_a_catalog_refusing_the_manifest_leaves_no_blob() -> None:
    nodes = [MemoryNode(f"n{i}") for i in range(3)]
    catalog = RefusingCatalog()
    store = ObjectStore(
        nodes,
        catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=lambda: 0.0,
        rng=seeded().randbytes,
        chunk_size=SMALL_CHUNK,
    )

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", b"kept", ErasureCoded(2, 1))
        before = [dict(n.blobs) for n in nodes]
        catalog.refuse = True
        with pytest.raises(KvsError, match="catalog unavailable"):
            await store.put_bytes("meters", "obj", b"y" * 300, ErasureCoded(2, 1))
        with pytest.raises(KvsError, match="catalog unavailable"):
            await store.set_policy("meters", "obj", Replication(3))
        assert [dict(n.blobs) for n in nodes] == before
        assert store.writing() == set()
        catalog.refuse = False
        assert await store.get_bytes("meters", "obj") == b"kept"

    asyncio.run(scenario())


@pytest.mark.parametrize("policy", [Replication(1), Replication(2), ErasureCoded(2, 1)], ids=str)
def test_one_chunk_objects_spread_over_every_node(policy: Policy) -> None:
    store, nodes, _ = memory_store(5)

    async def scenario() -> None:
        for i in range(60):
            await store.put_bytes("meters", f"small-{i}", b"reading", policy)

    asyncio.run(scenario())
    held = [len(node.blobs) for node in nodes]
    assert sum(held) == 60 * policy.nodes_needed
    assert min(held) >= 60 * policy.nodes_needed // 5 // 3, held  # no node left out or flooded


def test_large_chunks_are_opened_in_the_cpu_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()
    real = store_read._open_intact

    def spy(*args: Any) -> bytes | None:
        threads.add(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(store_read, "_open_intact", spy)
    store, _, _ = memory_store(4, chunk_size=store_read.OFFLOAD_BYTES)
    data = bytes(range(256)) * (store_read.OFFLOAD_BYTES // 128)  # two chunks

    async def scenario() -> bytes:
        await store.put_bytes("meters", "big", data, ErasureCoded(2, 1))
        return await store.get_bytes("meters", "big")

    assert asyncio.run(scenario()) == data
    assert threads
    assert all(name.startswith("kvs-cpu") for name in threads)
    assert store_read.cpu_pool()._max_workers >= 2
