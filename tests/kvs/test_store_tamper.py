"""Storage that swaps, truncates or replays blobs: a read gives the object or an error, never
other bytes."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.errors import KvsError
from meterseal.kvs.policy import ErasureCoded, Hybrid, Policy, Replication
from meterseal.kvs.repair import scrub
from tests.kvs.store_fixtures import memory_store

POLICIES: list[Policy] = [Replication(2), ErasureCoded(2, 1), Hybrid(2, 1), ErasureCoded(3, 2)]
A = bytes(range(256)) * 2
B = bytes(reversed(range(256))) * 2

tamper = st.lists(
    st.tuples(
        st.sampled_from(["swap", "truncate", "replay", "flip"]),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(POLICIES), tamper)
def test_a_read_of_tampered_storage_is_the_object_or_an_error(
    policy: Policy, moves: list[tuple[str, int, int]]
) -> None:
    store, nodes, _ = memory_store(policy.nodes_needed)

    async def scenario() -> None:
        await store.put_bytes("meters", "a", A, policy)
        await store.put_bytes("meters", "b", B, policy)
        old = {n.name: dict(n.blobs) for n in nodes}  # a version storage may replay
        await store.put_bytes("meters", "a", A[::-1], policy)
        blobs = [(node, blob_id) for node in nodes for blob_id in sorted(node.blobs)]
        for move, i, j in moves:
            node, blob_id = blobs[i % len(blobs)]
            other, other_id = blobs[j % len(blobs)]
            data = node.blobs[blob_id]
            if move == "swap":
                node.blobs[blob_id], other.blobs[other_id] = other.blobs[other_id], data
            elif move == "truncate":
                node.blobs[blob_id] = data[: j % max(1, len(data))]
            elif move == "flip":
                node.blobs[blob_id] = data[:-1] + bytes([data[-1] ^ 1 << j % 8])
            elif old[node.name]:
                replayed = sorted(old[node.name])[j % len(old[node.name])]
                node.blobs[blob_id] = old[node.name][replayed]
        for name, want in [("a", A[::-1]), ("b", B)]:
            try:
                got = await store.get_bytes("meters", name)
            except KvsError:
                continue
            assert got == want
        report = await scrub(store, ["meters"])
        for name, want in [("a", A[::-1]), ("b", B)]:
            try:
                assert await store.get_bytes("meters", name) == want
            except KvsError:
                assert report.unrepaired > 0

    asyncio.run(scenario())
