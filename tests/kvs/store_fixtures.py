"""Stores over memory nodes for the KVS tests: seeded randomness, a fixed clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

from meterseal.kvs.nodes import MemoryCatalog, MemoryNode
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.store import ObjectStore

MASTER = bytes(range(32))
SMALL_CHUNK = 64


class YieldingNode(MemoryNode):
    """A MemoryNode that lets other tasks run on every call, as a networked node would."""

    async def put(self, blob_id: str, data: bytes) -> None:
        """Yield, then store."""
        await asyncio.sleep(0)
        await super().put(blob_id, data)

    async def get(self, blob_id: str) -> bytes | None:
        """Yield, then read."""
        await asyncio.sleep(0)
        return await super().get(blob_id)


def seeded(seed: int = 7) -> random.Random:
    """A seeded random source (randbytes is the store's `rng`)."""
    return random.Random(seed)


def memory_store(
    count: int = 6, *, seed: int = 7, chunk_size: int = SMALL_CHUNK, yielding: bool = False
) -> tuple[ObjectStore, list[MemoryNode], MemoryCatalog]:
    """A store over `count` memory nodes n0..n(count-1) and a memory catalog."""
    kind = YieldingNode if yielding else MemoryNode
    nodes = [kind(f"n{i}") for i in range(count)]
    catalog = MemoryCatalog()
    store = ObjectStore(
        nodes,
        catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=lambda: 1_780_000_000.0,
        rng=seeded(seed).randbytes,
        chunk_size=chunk_size,
    )
    return store, nodes, catalog


async def pieces(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    """`data` cut at the given piece sizes (cycled), as a client would stream it."""
    position, turn = 0, 0
    while position < len(data):
        step = max(1, sizes[turn % len(sizes)]) if sizes else len(data)
        yield data[position : position + step]
        position += step
        turn += 1
