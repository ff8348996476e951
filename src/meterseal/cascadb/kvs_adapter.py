"""CascaDB's OrderedKv on the secure KVS: one sealed object per key, in one bucket.

An object's name is its key in lowercase hex, which sorts as the key's bytes do, so the store's
name-ordered listing is a key-ordered scan (the store pages from its name index: a page lists
the bucket's catalog keys and opens only its own manifests, then one get per key). A batch
is made atomic by an intent object: the whole batch is first stored as `~batch` (a name after
every hex name), then applied, then removed; `recover()` (run when the adapter opens) applies a
batch a crash left behind. The ObjectStore is asynchronous; this adapter runs its coroutines on
an event loop in another thread (`LoopThread`), so CascaDB's engine stays synchronous.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import cbor2

from meterseal.cascadb.errors import OperationalError
from meterseal.cascadb.kv import Write
from meterseal.cascadb.names import INTENT, PAGE, common_prefix, name_of
from meterseal.errors import KvsError, ObjectNotFound
from meterseal.kvs.store import ObjectStore

T = TypeVar("T")
APPLY_WIDTH = 64  # writes of a batch in flight at once


class LoopThread:
    """An event loop running in a daemon thread, for synchronous callers of async code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the loop and wait for its result."""
        if threading.current_thread() is self._thread:
            raise OperationalError("a KVS call from the adapter's own loop would never finish")
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result()

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class KvsOrderedKv:
    """An OrderedKv over an ObjectStore bucket (the store's coroutines run on `runner`)."""

    def __init__(self, store: ObjectStore, bucket: str, runner: LoopThread) -> None:
        self.store = store
        self.bucket = bucket
        self.runner = runner
        self.recover()

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            return self.runner.run(work)
        except KvsError as exc:
            raise OperationalError(f"the KVS failed: {exc}") from exc

    def get(self, key: bytes) -> bytes | None:
        """The value of `key`, None when absent."""
        return self._call(self._get(name_of(key)))

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values of `keys`, fetched concurrently in one call."""
        if not keys:
            return []
        return self._call(self._get_many([name_of(k) for k in keys]))

    async def _get_many(self, names: list[str]) -> list[bytes | None]:
        return list(await asyncio.gather(*(self._get(n) for n in names)))

    async def _get(self, name: str) -> bytes | None:
        try:
            return await self.store.get_bytes(self.bucket, name)
        except ObjectNotFound:
            return None

    def put(self, key: bytes, value: bytes) -> None:
        """Store `value` under `key` (one write: atomic by itself)."""
        self._call(self.store.put_bytes(self.bucket, name_of(key), value))

    def delete(self, key: bytes) -> None:
        """Remove `key`."""
        self._call(self.store.delete(self.bucket, name_of(key)))

    def scan(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for start <= key < end, in key order."""
        return iter(self._call(self._scan(start, end)))

    async def _scan(self, start: bytes, end: bytes | None) -> list[tuple[bytes, bytes]]:
        low, high = start.hex(), end.hex() if end is not None else INTENT
        prefix = common_prefix(low, high)
        found: list[tuple[bytes, bytes]] = []
        after = ""
        while True:
            page = await self.store.list(self.bucket, prefix=prefix, after=after, limit=PAGE)
            for info in page.objects:
                if low <= info.name < high:
                    value = await self._get(info.name)
                    if value is not None:
                        found.append((bytes.fromhex(info.name), value))
            if page.next_after is None or page.next_after >= high:
                return found
            after = page.next_after

    def write(self, batch: Sequence[Write]) -> None:
        """Apply `batch` all or nothing: the intent object first, then the writes."""
        if not batch:
            return
        names = [(name_of(k), v) for k, v in batch]
        self._call(self._write(names))

    async def _write(self, writes: list[tuple[str, bytes | None]]) -> None:
        if len(writes) > 1:
            await self.store.put_bytes(self.bucket, INTENT, cbor2.dumps(writes))
        await self._apply(writes)
        if len(writes) > 1:
            await self.store.delete(self.bucket, INTENT)

    async def _apply(self, writes: list[tuple[str, bytes | None]]) -> None:
        # Once the intent is stored the writes are independent (one per name), so they go
        # out together: on local directories each is a few fsyncs, waited for in parallel.
        for start in range(0, len(writes), APPLY_WIDTH):
            await asyncio.gather(*(self._one(n, v) for n, v in writes[start : start + APPLY_WIDTH]))

    async def _one(self, name: str, value: bytes | None) -> None:
        if value is None:
            await self.store.delete(self.bucket, name)
        else:
            await self.store.put_bytes(self.bucket, name, value)

    def recover(self) -> bool:
        """Finish a batch that a crash interrupted; whether there was one."""
        return self._call(self._recover())

    async def _recover(self) -> bool:
        pending = await self._get(INTENT)
        if pending is None:
            return False
        await self._apply([(str(n), v) for n, v in cbor2.loads(pending)])
        await self.store.delete(self.bucket, INTENT)
        return True
