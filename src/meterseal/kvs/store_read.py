"""Reading the chunks of the store's objects: blobs fetched, checked, decoded and opened.

`ChunkReads` is the reading half of `ObjectStore` (kvs/store.py): a chunk's plaintext from an
intact copy or from k intact fragments (each blob's GMAC tag checked, then the chunk's GCM
seal), falling back from a missing or bad blob to the others. The usual erasure read checks,
decodes and opens its k data fragments in one worker-thread call.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from meterseal.errors import KvsError
from meterseal.kvs.chunks import decode, unseal
from meterseal.kvs.manifest import Blob, ChunkEntry, Manifest
from meterseal.kvs.nodes import BlobNode
from meterseal.kvs.policy import Policy, Replication
from meterseal.kvs.sealing import ObjectContext, blob_intact

T = TypeVar("T")

OFFLOAD_BYTES = 256 * 1024  # seal/encode/decode chunks from this size in a worker thread

_pool: ThreadPoolExecutor | None = None
_pool_made = threading.Lock()  # two event loops asking at once make one pool, not two


def cpu_pool() -> ThreadPoolExecutor:
    """The process's threads for sealing, coding and opening chunks: one per core (two at
    least), so chunks are worked on in the order they were asked for, as many at once as
    there are cores, instead of all at once and each slower (the first one a read sends
    is ready sooner); apart from the default executor's threads, which wait on files."""
    global _pool
    with _pool_made:
        if _pool is None:
            cores = (
                len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            )
            _pool = ThreadPoolExecutor(max(2, cores or 1), thread_name_prefix="kvs-cpu")
        return _pool


class ChunkReads:
    """Chunks of stored objects from the nodes `by_name` (the store's reading half)."""

    by_name: dict[str, BlobNode]

    async def cpu(self, size: int, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)`, in a `cpu_pool` thread when it handles `size` >= OFFLOAD_BYTES bytes."""
        if size >= OFFLOAD_BYTES:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(cpu_pool(), functools.partial(work, *args))
        return work(*args)

    async def read_chunk(self, manifest: Manifest, object_key: bytes, index: int) -> bytes:
        """The plaintext of chunk `index`; KvsError when too few of its blobs are intact."""
        entry, policy = manifest.chunks[index], manifest.policy
        final = index == len(manifest.chunks) - 1
        args = (object_key, manifest.context, index, final)
        if not entry.replicas and not isinstance(policy, Replication):
            # The usual read: its k data fragments' tags checked, decoded and opened in one
            # worker call (one hand-off per chunk); any missing or bad: the general path.
            k = policy.k
            datas = await asyncio.gather(*(self._fetch_raw(b) for b in entry.fragments[:k]))
            blobs = [(i, d, entry.fragments[i].tag) for i, d in enumerate(datas) if d is not None]
            if len(blobs) == k:
                plain = await self.cpu(entry.length, _open_intact, policy, blobs, *args)
                if plain is not None:
                    return plain
        found = await self.gather_blobs(manifest, object_key, index)
        return await self.cpu(entry.length, unseal, policy, found, *args)

    async def read_sealed(self, manifest: Manifest, object_key: bytes, index: int) -> bytes:
        """Chunk `index` sealed: from an intact copy, else decoded from intact fragments."""
        found = await self.gather_blobs(manifest, object_key, index)
        if isinstance(found, bytes):
            return found
        size = manifest.chunks[index].length
        return await self.cpu(size, decode, manifest.policy, found)

    async def gather_blobs(
        self, manifest: Manifest, object_key: bytes, index: int
    ) -> bytes | dict[int, bytes]:
        """An intact copy of chunk `index`, else k intact fragments; KvsError when neither."""
        entry = manifest.chunks[index]
        copies = len(entry.replicas)
        for turn in range(copies):  # chunk i starts at copy i: reads spread over the copies
            position = (index + turn) % copies
            data = await self.fetch(entry.replicas[position], object_key, index, position)
            if data is not None:
                return data
        if entry.fragments and not isinstance(manifest.policy, Replication):
            found = await self.fetch_fragments(entry, object_key, index, manifest.policy.k)
            if len(found) >= manifest.policy.k:
                return found
        raise KvsError(
            f"chunk {index} of {manifest.bucket}/{manifest.name} v{manifest.version}: "
            f"too few intact blobs ({len(entry.replicas)} copies, {len(entry.fragments)} fragments)"
        )

    async def fetch_fragments(
        self, entry: ChunkEntry, object_key: bytes, index: int, k: int
    ) -> dict[int, bytes]:
        """At least k intact fragments of a chunk by index when there are: data ones first."""
        found: dict[int, bytes] = {}
        order = list(range(len(entry.fragments)))
        skip = len(entry.replicas)  # a fragment's position counts the copies before it
        while order and len(found) < k:
            batch, order = order[: k - len(found)], order[k - len(found) :]
            datas = await asyncio.gather(*(self._fetch_raw(entry.fragments[i]) for i in batch))
            got = [(i, d) for i, d in zip(batch, datas, strict=True) if d is not None]
            # The batch's tags in one call off the event loop (a 16 MiB object's tags take
            # about as long as its decryption; the loop meanwhile sends the chunk before).
            intact = await self.cpu(
                sum(len(d) for _i, d in got),
                _intact,
                [(object_key, index, skip + i, d, entry.fragments[i].tag) for i, d in got],
            )
            found.update({i: d for (i, d), ok in zip(got, intact, strict=True) if ok})
        return found

    async def _fetch_raw(self, blob: Blob) -> bytes | None:
        """The bytes a blob's node has for it (unchecked), or None."""
        node = self.by_name.get(blob.node)
        if node is None:
            return None
        try:
            return await node.get(blob.blob_id)
        except Exception:  # a dead or failing node is what the other copies are for
            return None

    async def fetch(self, blob: Blob, object_key: bytes, index: int, position: int) -> bytes | None:
        """The bytes of blob `position` of chunk `index` when its node has them intact."""
        data = await self._fetch_raw(blob)
        if data is None or not blob_intact(object_key, index, position, data, blob.tag):
            return None
        return data


def _open_intact(
    policy: Policy,
    blobs: list[tuple[int, bytes, bytes]],
    key: bytes,
    ctx: ObjectContext,
    index: int,
    final: bool,
) -> bytes | None:
    """The plaintext of chunk `index` from fragments (position, data, tag) when every one is
    intact; None when one is not."""
    if not all(blob_intact(key, index, i, data, tag) for i, data, tag in blobs):
        return None
    return unseal(policy, {i: data for i, data, _tag in blobs}, key, ctx, index, final)


def _intact(blobs: list[tuple[bytes, int, int, bytes, bytes]]) -> list[bool]:
    """Whether each (object key, chunk, position, data, tag) is intact."""
    return [blob_intact(*blob) for blob in blobs]
