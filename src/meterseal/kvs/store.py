"""The store engine of the secure KVS: sealed, streamed objects over nodes and a catalog.

`ObjectStore` seals each chunk of an object as it arrives, spreads it over distinct healthy
nodes by the object's policy (copies, fragments or both), and only then swaps the object's
sealed manifest in the catalog: a reader sees the old version or the new one, never half. A
write that cannot place its policy fails with KvsError and deletes what it had written. Reads
check every blob's tag and fall back to other copies or fragments; a reader whose version
was re-encoded by a policy change (or repaired) reloads the manifest and goes on (a chunk's
blobs are read in kvs/store_read.py). Scrubbing and repair are in kvs/repair.py. Time and
randomness are parameters (`clock`, `rng`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

from meterseal.errors import KvsError, ObjectNotFound
from meterseal.kvs.chunks import Chunk, Piece, Prepared, pieces, prepare, rechunk
from meterseal.kvs.freshness import VersionMarks
from meterseal.kvs.listing import NameIndex, page_of
from meterseal.kvs.manifest import (
    Blob,
    ChunkEntry,
    ListPage,
    Manifest,
    ObjectInfo,
    chunk_spans,
    decode_manifest,
    encode_manifest,
)
from meterseal.kvs.nodes import BlobNode, Catalog, ReplicaSet
from meterseal.kvs.policy import DEFAULT_CHUNK_SIZE, Policy, Replication
from meterseal.kvs.pool import NodePool
from meterseal.kvs.sealing import (
    BucketKeys,
    ObjectContext,
    Random,
    new_object_key,
    open_manifest,
    seal_manifest,
    unwrap_key,
    wrap_key,
)
from meterseal.kvs.store_read import ChunkReads

__all__ = ["BucketKeySource", "Clock", "ListPage", "ObjectInfo", "ObjectStore"]

Clock = Callable[[], float]  # seconds since the epoch
BucketKeySource = Callable[[str], bytes]  # bucket name -> its 32-byte key

SEALING_AHEAD = 2  # chunks of a write sealed at once (2 cores: encryption beside coding)
READ_RETRIES = 8  # manifest reloads a read makes while policy changes or repairs go on
# While a read waits for chunk i and sends it, chunks i+1 and i+2 are opened (2 cores: both
# busy, the next chunks ready when one goes out); at most READ_AHEAD + 1 chunks of a read are
# in memory at once.
READ_AHEAD = 2
MAX_NAME_BYTES = 1024
DEFAULT_POLICY: Policy = Replication(1)  # the embedded default: one copy


class ObjectStore(ChunkReads):
    """Objects by (bucket, name): put, get (ranges), head, delete, list, set_policy."""

    def __init__(
        self,
        nodes: Sequence[BlobNode],
        catalog: Catalog,
        bucket_key: BucketKeySource,
        *,
        clock: Clock,
        rng: Random,
        replica_sets: Sequence[ReplicaSet] = (),
        default_policy: Policy = DEFAULT_POLICY,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        health_ttl: float = 0.0,
    ) -> None:
        self.pool = NodePool(nodes, replica_sets, clock, health_ttl)
        self.nodes, self.by_name = self.pool.nodes, self.pool.by_name
        self.catalog = catalog
        self.clock = clock
        self.rng = rng
        self.default_policy = default_policy
        if chunk_size < 1:
            raise KvsError(f"chunk size {chunk_size} must be positive")
        self.chunk_size = chunk_size
        self._bucket_key = bucket_key
        self.orphans: set[Blob] = set()  # blobs to delete when their node answers again
        self._writing: list[list[Blob]] = []
        self._keys: dict[str, BucketKeys] = {}
        self._index: dict[str, NameIndex] = {}  # bucket -> its names (kvs/listing.py)
        self.marks = VersionMarks()  # the newest version seen of each entry (kvs/freshness.py)
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # -- keys, locks, manifests ------------------------------------------------------------

    def keys(self, bucket: str) -> BucketKeys:
        """The bucket's subkeys (derived once)."""
        if not bucket:
            raise KvsError("a bucket needs a name")
        found = self._keys.get(bucket)
        if found is None:
            found = self._keys[bucket] = BucketKeys.derive(bucket, self._bucket_key(bucket))
        return found

    def lock(self, bucket: str, name: str) -> asyncio.Lock:
        """The lock serializing this store's writes, policy changes and repairs of an object."""
        lock = self._locks.get((bucket, name))
        if lock is None:
            lock = self._locks[(bucket, name)] = asyncio.Lock()
        return lock

    def open_entry(self, keys: BucketKeys, key: str, sealed: bytes) -> Manifest:
        """The manifest of a catalog entry; KvsError when it is not this bucket's, at this key,
        RolledBack when it is older than one this store saw of the entry."""
        manifest = decode_manifest(open_manifest(keys, key, sealed))
        if manifest.bucket != keys.bucket or keys.catalog_key(manifest.name) != key:
            raise KvsError(f"catalog entry {key} of bucket {keys.bucket} names another object")
        self._mark(keys, key, manifest)
        return manifest

    def _mark(self, keys: BucketKeys, key: str, manifest: Manifest) -> None:
        what = f"{keys.bucket}/{manifest.name}"
        self.marks.check((keys.bucket_id, key), manifest.version, manifest.created_at, what)

    async def load(self, keys: BucketKeys, name: str) -> Manifest | None:
        """The object's current manifest, or None."""
        key = keys.catalog_key(name)
        sealed = await self.catalog.get(keys.bucket_id, key)
        return None if sealed is None else self.open_entry(keys, key, sealed)

    async def save(self, keys: BucketKeys, manifest: Manifest) -> None:
        """Seal the manifest and make it the object's current one."""
        key = keys.catalog_key(manifest.name)
        sealed = seal_manifest(keys, key, encode_manifest(manifest), self.rng)
        await self.catalog.put(keys.bucket_id, key, sealed)
        self._mark(keys, key, manifest)
        self._index.setdefault(keys.bucket, NameIndex()).learn(key, manifest.name)

    # -- writing -------------------------------------------------------------------------------

    async def put(
        self,
        bucket: str,
        name: str,
        chunks: AsyncIterable[Piece],
        policy: Policy | None = None,
        size: int | None = None,
    ) -> ObjectInfo:
        """Store the object streamed as `chunks` (any sizes) as a new version; its info.

        Given its `size`, each chunk is sealed as soon as it is complete (the last one too);
        a stream of another length fails the write."""
        keys = self.keys(bucket)
        _check_name(name)
        async with self.lock(bucket, name):
            old = await self.load(keys, name)
            manifest = await self._write(
                keys,
                name,
                chunks,
                policy or self.default_policy,
                version=self.marks.next_version(
                    (keys.bucket_id, keys.catalog_key(name)), old.version if old else None
                ),
                content_id=self.rng(16).hex(),
                created_at=self.clock(),
                chunk_size=self.chunk_size,
                total=size,
            )
        if old is not None:
            await self.discard(old.blobs())
        return ObjectInfo.of(manifest)

    async def put_bytes(
        self, bucket: str, name: str, data: Piece, policy: Policy | None = None
    ) -> ObjectInfo:
        """`put` of an object already in memory."""
        size = memoryview(data).nbytes
        return await self.put(bucket, name, pieces(data, self.chunk_size), policy, size)

    async def _write(
        self,
        keys: BucketKeys,
        name: str,
        source: AsyncIterable[Piece],
        policy: Policy,
        total: int | None = None,
        **fields: Any,
    ) -> Manifest:
        """Seal and place every chunk of `source` (`total` bytes when known), then save its
        manifest; the manifest."""
        written: list[Blob] = []
        self._writing.append(written)  # a sweep leaves blobs of writes under way alone
        try:
            manifest = await self._place_all(keys, name, source, policy, written, total, **fields)
            await self._commit(keys, manifest)
        finally:
            self._writing.remove(written)
        return manifest

    def writing(self) -> set[Blob]:
        """The blobs of this store's writes under way (no manifest names them yet)."""
        return {blob for blobs in self._writing for blob in blobs}

    async def _commit(self, keys: BucketKeys, manifest: Manifest) -> None:
        """Save the manifest; when that fails, its blobs go unless the catalog took it."""
        try:
            await self.save(keys, manifest)
        except BaseException:
            # unless the catalog took it after all; when that is unknown the blobs stay (sweep)
            with contextlib.suppress(Exception):
                if await asyncio.shield(self.load(keys, manifest.name)) != manifest:
                    await asyncio.shield(self.discard(manifest.blobs()))
            raise

    async def _place_all(
        self,
        keys: BucketKeys,
        name: str,
        source: AsyncIterable[Piece],
        policy: Policy,
        written: list[Blob],
        total: int | None,
        **fields: Any,
    ) -> Manifest:
        """Seal and place every chunk of `source`; the manifest (not yet saved)."""
        ctx = ObjectContext(keys.bucket, name, fields["version"], str(policy))
        object_key = new_object_key(self.rng)
        chunks = rechunk(source, fields["chunk_size"], total)
        try:
            entries = await self._store_chunks(chunks, policy, object_key, ctx, written)
        except BaseException as error:
            await asyncio.shield(self.discard(written))
            if isinstance(error, KvsError):
                where = f"{keys.bucket}/{name}"
                raise KvsError(f"writing {where} failed, nothing kept: {error}") from error
            raise
        return Manifest(
            bucket=keys.bucket,
            name=name,
            policy=policy,
            size=sum(e.length for e in entries),
            wrapped_key=wrap_key(keys, ctx, object_key, self.rng),
            chunks=tuple(entries),
            **fields,
        )

    async def _store_chunks(
        self,
        chunks: AsyncIterator[tuple[int, bool, Chunk]],
        policy: Policy,
        object_key: bytes,
        ctx: ObjectContext,
        written: list[Blob],
    ) -> list[ChunkEntry]:
        """Seal and store chunk after chunk: while chunks i and i+1 are sealed (the one's
        encryption, which lets go of the GIL, beside the other's erasure coding), chunk i+2
        is received and chunk i-1 stored."""
        targets = await self.pool.placement(policy)
        copies = 1 if isinstance(targets[0], ReplicaSet) else getattr(policy, "copies", 1)
        offset = int.from_bytes(self.rng(4), "big")  # objects start on random nodes
        entries: list[ChunkEntry] = []
        sealing: deque[asyncio.Future[Prepared]] = deque()
        storing: asyncio.Task[ChunkEntry] | None = None
        order = itertools.count()  # chunk i goes to the nodes from offset + i on

        async def place() -> None:  # the oldest chunk in sealing, after the one before
            nonlocal storing
            ready = await sealing[0]
            sealing.popleft()
            if storing is not None:
                entries.append(await storing)
            turn = (offset + next(order)) % len(targets)
            rotated = targets[turn:] + targets[:turn]
            storing = asyncio.create_task(self._place(rotated, ready, written))

        try:
            async for index, final, plain in chunks:
                if len(sealing) == SEALING_AHEAD:
                    await place()
                args = (policy, copies, object_key, ctx, index, final, plain)
                sealing.append(asyncio.ensure_future(self.cpu(len(plain), prepare, *args)))
            while sealing:  # rechunk gives at least one chunk
                await place()
            assert storing is not None
            entries.append(await storing)
        finally:
            await _drop(*sealing, *(task for task in (storing,) if task is not None))
        return entries

    async def _place(
        self, targets: list[BlobNode], ready: Prepared, written: list[Blob]
    ) -> ChunkEntry:
        """Store one chunk's copies and fragments on distinct `targets`."""
        blobs = [
            Blob(node.name, self.rng(16).hex(), tag)
            for node, tag in zip(targets, ready.tags, strict=False)
        ]
        written.extend(blobs)
        results = await asyncio.gather(
            *(
                self.by_name[b.node].put(b.blob_id, d)
                for b, d in zip(blobs, ready.datas, strict=True)
            ),
            return_exceptions=True,
        )
        for blob, result in zip(blobs, results, strict=True):
            if isinstance(result, BaseException):
                self.pool.forget(blob.node)
                raise KvsError(f"node {blob.node} failed: {result}") from result
        return ChunkEntry(ready.length, tuple(blobs[: ready.copies]), tuple(blobs[ready.copies :]))

    async def discard(self, blobs: Sequence[Blob]) -> None:
        """Delete blobs; those a failing node keeps are retried by `collect` (scrub runs it)."""
        blobs = [b for b in blobs if b.node in self.by_name]
        results = await asyncio.gather(
            *(self.by_name[b.node].delete(b.blob_id) for b in blobs), return_exceptions=True
        )
        for blob, result in zip(blobs, results, strict=True):
            if isinstance(result, Exception):
                self.orphans.add(blob)

    async def collect(self) -> int:
        """Retry deleting the blobs failed nodes kept; how many are still left."""
        orphans, self.orphans = list(self.orphans), set()
        await self.discard(orphans)
        return len(self.orphans)

    # -- reading -------------------------------------------------------------------------------

    async def head(self, bucket: str, name: str) -> ObjectInfo | None:
        """The object's info, or None."""
        manifest = await self.load(self.keys(bucket), name)
        return None if manifest is None else ObjectInfo.of(manifest)

    async def get(
        self, bucket: str, name: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The bytes [start, end) of the object (end None: to its end), chunk by chunk."""
        keys = self.keys(bucket)
        manifest = await self.load(keys, name)
        if manifest is None:
            raise ObjectNotFound(f"no object {name!r} in bucket {bucket!r}")
        end = manifest.size if end is None else min(end, manifest.size)
        if not 0 <= start <= manifest.size or end < start:
            raise KvsError(f"range {start}-{end} is outside {name!r} ({manifest.size} bytes)")
        position, retries = start, READ_RETRIES
        object_key = unwrap_key(keys, manifest.context, manifest.wrapped_key)
        ahead: dict[int, asyncio.Task[bytes]] = {}  # chunks read before their turn
        try:
            while position < end:
                spans = chunk_spans(manifest, position, end)
                index, lo, hi = spans[0]
                task = ahead.pop(index, None) or self._reader(manifest, object_key, index)
                self._read_ahead(manifest, object_key, spans[1 : READ_AHEAD + 1], ahead)
                try:
                    plain = await task
                except KvsError:
                    await _drop(*ahead.values())
                    ahead.clear()
                    newer = await self.load(keys, name)
                    if retries == 0 or not _same_content(manifest, newer):
                        raise
                    assert newer is not None
                    manifest, retries = newer, retries - 1
                    object_key = unwrap_key(keys, manifest.context, manifest.wrapped_key)
                    continue
                yield plain[lo:hi]
                position += hi - lo
        finally:
            await _drop(*ahead.values())

    def _read_ahead(
        self,
        manifest: Manifest,
        object_key: bytes,
        spans: list[tuple[int, int, int]],
        ahead: dict[int, asyncio.Task[bytes]],
    ) -> None:
        """Start reading the chunks of `spans` not yet under way."""
        for index, _lo, _hi in spans:
            if index not in ahead:
                ahead[index] = self._reader(manifest, object_key, index)

    def _reader(self, manifest: Manifest, object_key: bytes, index: int) -> asyncio.Task[bytes]:
        return asyncio.create_task(self.read_chunk(manifest, object_key, index))

    async def get_bytes(
        self, bucket: str, name: str, start: int = 0, end: int | None = None
    ) -> bytes:
        """`get` gathered into one bytes object."""
        return b"".join([piece async for piece in self.get(bucket, name, start, end)])

    # -- delete, list, policy --------------------------------------------------------------

    async def delete(self, bucket: str, name: str) -> bool:
        """Remove the object (catalog entry first, then its blobs); whether it existed."""
        keys = self.keys(bucket)
        async with self.lock(bucket, name):
            manifest = await self.load(keys, name)
            if manifest is None:
                return False
            key = keys.catalog_key(name)
            await self.catalog.delete(keys.bucket_id, key)
            self.marks.deleted((keys.bucket_id, key), manifest.version, self.clock())
        await self.discard(manifest.blobs())
        return True

    async def manifests(self, bucket: str) -> AsyncIterator[Manifest | KvsError]:
        """Every manifest of the bucket, or the KvsError of an entry that does not open."""
        keys = self.keys(bucket)
        async for key, sealed in self.catalog.items(keys.bucket_id):
            try:
                yield self.open_entry(keys, key, sealed)
            except KvsError as error:
                yield error

    async def list(
        self, bucket: str, prefix: str = "", after: str = "", limit: int = 1000
    ) -> ListPage:
        """Objects whose name starts with `prefix` and sorts after `after`, in name order."""
        if limit < 1:
            raise KvsError(f"limit {limit} must be positive")
        keys = self.keys(bucket)
        index = self._index.setdefault(bucket, NameIndex())

        async def opener(key: str) -> Manifest | None:
            sealed = await self.catalog.get(keys.bucket_id, key)
            return None if sealed is None else self.open_entry(keys, key, sealed)

        names = await index.refresh(await self.catalog.keys(keys.bucket_id), opener)
        return await page_of(names, lambda name: self.load(keys, name), prefix, after, limit)

    async def set_policy(self, bucket: str, name: str, policy: Policy) -> ObjectInfo:
        """Re-encode the object under `policy` as a new version, swap, delete the old blobs."""
        keys = self.keys(bucket)
        async with self.lock(bucket, name):
            old = await self.load(keys, name)
            if old is None:
                raise ObjectNotFound(f"no object {name!r} in bucket {bucket!r}")
            if old.policy == policy:
                return ObjectInfo.of(old)
            manifest = await self._write(
                keys,
                name,
                self._plaintext(keys, old),
                policy,
                total=old.size,
                version=old.version + 1,
                content_id=old.content_id,
                created_at=old.created_at,
                chunk_size=old.chunk_size,
            )
        await self.discard(old.blobs())
        return ObjectInfo.of(manifest)

    async def _plaintext(self, keys: BucketKeys, manifest: Manifest) -> AsyncIterator[bytes]:
        object_key = unwrap_key(keys, manifest.context, manifest.wrapped_key)
        for index in range(len(manifest.chunks)):
            yield await self.read_chunk(manifest, object_key, index)


async def _drop(*tasks: asyncio.Future[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _check_name(name: str) -> None:
    if not name or len(name.encode()) > MAX_NAME_BYTES:
        raise KvsError(f"an object name has 1 to {MAX_NAME_BYTES} bytes (UTF-8)")


def _same_content(old: Manifest, new: Manifest | None) -> bool:
    """Whether a reader of `old` may go on with `new`: same content, other placement."""
    return new is not None and new != old and new.content_id == old.content_id
