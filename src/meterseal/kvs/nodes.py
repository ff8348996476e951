"""Storage nodes of the secure KVS: what the store needs of them, over local dirs and memory.

Nodes hold opaque blobs (sealed chunks or fragments of them) under random hex ids, and the
catalog holds sealed manifests under HMAC keys: nothing here ever sees a name or plaintext.
`LocalDirNode` and `LocalDirCatalog` are the embedded default (one machine, nothing running);
`MemoryNode` and `MemoryCatalog` are the same contracts in memory (tests, benchmarks), with
switches to take a node down. kvs/nats_nodes.py implements the Protocols on NATS JetStream.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from meterseal.errors import KvsError
from meterseal.runtime.durable import write_durably

_ID = re.compile(r"[0-9a-f]{8,128}")
_BUCKET = re.compile(r"[A-Za-z0-9_-]{1,128}")


@runtime_checkable
class BlobNode(Protocol):
    """One storage node: opaque blobs by id; `put` is durable when it returns."""

    name: str  # the node's name, its placement tag in manifests

    async def put(self, blob_id: str, data: bytes) -> None:
        """Store `data` under `blob_id` durably (replacing any blob of that id)."""
        ...

    async def get(self, blob_id: str) -> bytes | None:
        """The blob, or None when absent."""
        ...

    async def delete(self, blob_id: str) -> None:
        """Remove the blob; absent is fine."""
        ...

    def blob_ids(self) -> AsyncIterator[str]:
        """Every blob id the node holds (an async generator)."""
        ...

    async def healthy(self) -> bool:
        """Whether the node takes writes now."""
        ...


@runtime_checkable
class ReplicaSet(BlobNode, Protocol):
    """A node that keeps `copies` copies of every blob itself (a replicated stream, n dirs)."""

    copies: int


@runtime_checkable
class Catalog(Protocol):
    """Sealed manifests by (bucket id, catalog key): durable and replicated."""

    async def put(self, bucket_id: str, key: str, sealed: bytes) -> None:
        """Store a sealed manifest durably (replacing the previous one)."""
        ...

    async def get(self, bucket_id: str, key: str) -> bytes | None:
        """The sealed manifest, or None."""
        ...

    async def delete(self, bucket_id: str, key: str) -> None:
        """Remove an entry; absent is fine."""
        ...

    def items(self, bucket_id: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every (key, sealed manifest) of the bucket, in no particular order."""
        ...

    async def keys(self, bucket_id: str) -> list[str]:
        """The bucket's keys now, without reading an entry (the store's listing uses it)."""
        ...

    async def bucket_ids(self) -> list[str]:
        """The ids of the buckets holding at least one entry (a sweep checks it knows each)."""
        ...


def check_blob_id(blob_id: str) -> str:
    """`blob_id` when it is 8 to 128 lowercase hex digits (ids never carry names or paths)."""
    if not _ID.fullmatch(blob_id):
        raise KvsError(f"blob id {blob_id!r} is not 8-128 lowercase hex digits")
    return blob_id


def check_bucket_id(bucket_id: str) -> str:
    """`bucket_id` when it is 1 to 128 letters, digits, '-' or '_' (safe as a file name)."""
    if not _BUCKET.fullmatch(bucket_id):
        raise KvsError(f"bucket id {bucket_id!r} must be 1-128 of [A-Za-z0-9_-]")
    return bucket_id


class MemoryNode:
    """A BlobNode in memory; `up = False` makes it fail like a dead node."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.blobs: dict[str, bytes] = {}
        self.up = True

    def _alive(self) -> None:
        if not self.up:
            raise KvsError(f"node {self.name} is down")

    async def put(self, blob_id: str, data: bytes) -> None:
        """Keep a copy of `data`."""
        self._alive()
        self.blobs[check_blob_id(blob_id)] = bytes(data)

    async def get(self, blob_id: str) -> bytes | None:
        """The blob or None."""
        self._alive()
        return self.blobs.get(blob_id)

    async def delete(self, blob_id: str) -> None:
        """Forget the blob."""
        self._alive()
        self.blobs.pop(blob_id, None)

    async def blob_ids(self) -> AsyncIterator[str]:
        """The ids held now."""
        self._alive()
        for blob_id in list(self.blobs):
            yield blob_id

    async def healthy(self) -> bool:
        """Whether the node is up."""
        return self.up


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class LocalDirNode:
    """A BlobNode over a local directory: one file per blob under a two-hex-digit fan-out."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = Path(root)

    def _path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self.root / blob_id[:2] / blob_id

    def _io_error(self, error: OSError) -> KvsError:
        return KvsError(f"node {self.name} ({self.root}): {error}")

    async def put(self, blob_id: str, data: bytes) -> None:
        """Store the blob durably (temp file, fsync, rename, fsync of the directory)."""
        try:
            await asyncio.to_thread(write_durably, self._path(blob_id), data)
        except OSError as error:
            raise self._io_error(error) from error

    async def get(self, blob_id: str) -> bytes | None:
        """The blob's bytes or None."""
        try:
            return await asyncio.to_thread(_read, self._path(blob_id))
        except OSError as error:
            raise self._io_error(error) from error

    async def delete(self, blob_id: str) -> None:
        """Remove the blob's file."""
        try:
            await asyncio.to_thread(self._path(blob_id).unlink, True)
        except OSError as error:
            raise self._io_error(error) from error

    async def blob_ids(self) -> AsyncIterator[str]:
        """The ids of the blob files (temporary files of unfinished writes are not blobs)."""
        names = await asyncio.to_thread(self._listing)
        for name in names:
            yield name

    def _listing(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.glob("??/*") if _ID.fullmatch(p.name)]

    async def healthy(self) -> bool:
        """Whether the directory exists (or can be made) and is writable."""
        return await asyncio.to_thread(self._usable)

    def _usable(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self.root, os.W_OK | os.X_OK)


class MirrorSet:
    """A ReplicaSet over `copies` BlobNodes: writes go to all, reads to the first that has it."""

    def __init__(self, name: str, members: Sequence[BlobNode]) -> None:
        if not members:
            raise KvsError(f"replica set {name} has no members")
        self.name = name
        self.members = list(members)
        self.copies = len(self.members)

    async def put(self, blob_id: str, data: bytes) -> None:
        """Store on every member; fails (after cleaning up) when one of them fails."""
        results = await asyncio.gather(
            *(m.put(blob_id, data) for m in self.members), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.delete(blob_id)
            raise KvsError(f"replica set {self.name}: {len(failed)} member(s) failed: {failed[0]}")

    async def get(self, blob_id: str) -> bytes | None:
        """The blob from the first member that answers with it."""
        for member in self.members:
            try:
                data = await member.get(blob_id)
            except KvsError:
                continue
            if data is not None:
                return data
        return None

    async def delete(self, blob_id: str) -> None:
        """Delete on every member that answers."""
        await asyncio.gather(*(m.delete(blob_id) for m in self.members), return_exceptions=True)

    async def blob_ids(self) -> AsyncIterator[str]:
        """The union of the members' ids."""
        seen: set[str] = set()
        for member in self.members:
            try:
                async for blob_id in member.blob_ids():
                    if blob_id not in seen:
                        seen.add(blob_id)
                        yield blob_id
            except KvsError:
                continue

    async def healthy(self) -> bool:
        """Whether every member takes writes (a write needs all its copies)."""
        return all(await asyncio.gather(*(m.healthy() for m in self.members)))


class MemoryCatalog:
    """A Catalog in memory."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, bytes]] = {}

    async def put(self, bucket_id: str, key: str, sealed: bytes) -> None:
        """Keep the sealed manifest."""
        self.entries.setdefault(check_bucket_id(bucket_id), {})[check_blob_id(key)] = sealed

    async def get(self, bucket_id: str, key: str) -> bytes | None:
        """The sealed manifest or None."""
        return self.entries.get(bucket_id, {}).get(key)

    async def delete(self, bucket_id: str, key: str) -> None:
        """Forget the entry."""
        self.entries.get(bucket_id, {}).pop(key, None)

    async def items(self, bucket_id: str) -> AsyncIterator[tuple[str, bytes]]:
        """The bucket's entries now."""
        for item in list(self.entries.get(bucket_id, {}).items()):
            yield item

    async def keys(self, bucket_id: str) -> list[str]:
        """The bucket's keys now."""
        return sorted(self.entries.get(bucket_id, {}))

    async def bucket_ids(self) -> list[str]:
        """The buckets with entries."""
        return sorted(b for b, entries in self.entries.items() if entries)


class LocalDirCatalog:
    """A Catalog over a local directory: <root>/<bucket id>/<key>, written durably."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, bucket_id: str, key: str) -> Path:
        return self.root / check_bucket_id(bucket_id) / check_blob_id(key)

    async def put(self, bucket_id: str, key: str, sealed: bytes) -> None:
        """Store durably (temp file, fsync, rename)."""
        await asyncio.to_thread(write_durably, self._path(bucket_id, key), sealed)

    async def get(self, bucket_id: str, key: str) -> bytes | None:
        """The sealed manifest or None."""
        return await asyncio.to_thread(_read, self._path(bucket_id, key))

    async def delete(self, bucket_id: str, key: str) -> None:
        """Remove the entry's file."""
        await asyncio.to_thread(self._path(bucket_id, key).unlink, True)

    async def items(self, bucket_id: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every entry of the bucket (files read one at a time)."""
        folder = self.root / check_bucket_id(bucket_id)
        for name in await self.keys(bucket_id):
            data = await asyncio.to_thread(_read, folder / name)
            if data is not None:
                yield name, data

    async def keys(self, bucket_id: str) -> list[str]:
        """The bucket's keys (its file names), sorted."""
        folder = self.root / check_bucket_id(bucket_id)
        return await asyncio.to_thread(
            lambda: sorted(p.name for p in folder.glob("*") if _ID.fullmatch(p.name))
        )

    async def bucket_ids(self) -> list[str]:
        """The bucket directories holding an entry."""

        def scan() -> list[str]:
            if not self.root.is_dir():
                return []
            return sorted(
                d.name
                for d in self.root.iterdir()
                if _BUCKET.fullmatch(d.name) and any(_ID.fullmatch(p.name) for p in d.glob("*"))
            )

        return await asyncio.to_thread(scan)
