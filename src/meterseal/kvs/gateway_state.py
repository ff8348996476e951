"""The gateway's own state, kept as reserved objects of the store: API keys, bucket policies.

The key table, one marker object per bucket written to (`bucket/NAME`) and a bucket's default
policy when it has its own (`policy/NAME`) live in the reserved bucket `RESERVED` (a name no
client can address: bucket names start with a letter or digit). One object per bucket, not
one map: two gateways registering two buckets at once never overwrite each other's (the sweep
relies on knowing every bucket). They are sealed under keys derived from the CAS's master secret
like every object, and every gateway over the same nodes reads the same ones. Reads are
cached for `ttl` seconds (a revoked key stops working within that time on every gateway); a
key the cached table does not know has it read again at once (at most every RELOAD_EVERY).

Freshness: the store refuses a manifest older than one it saw (kvs/freshness.py); `MarksFile`
keeps the versions of the key table and the registry this deployment saved, so that a gateway
started again, or the running gateway after `meterseal kvs keys revoke` in another process,
refuses a table the storage nodes rolled back (`RolledBack`) instead of reviving a key.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cbor2

from meterseal.errors import KvsError
from meterseal.kvs.chunks import Piece
from meterseal.kvs.freshness import GatewayMarks, RolledBack
from meterseal.kvs.gateway_keys import KeyTable, KvsKeyError
from meterseal.kvs.policy import Policy, parse_policy

RESERVED = "_kvs"  # the gateway's own bucket
KEY_TABLE = "keys"
BUCKET_MARK = "bucket/"  # RESERVED/bucket/NAME: the bucket exists (written once, empty)
POLICY_OF = "policy/"  # RESERVED/policy/NAME: the bucket's default policy (absent: the gateway's)
BUCKET_POLICIES = "buckets"  # the one-map registry of earlier versions: read, never written
RELOAD_EVERY = 0.5  # seconds: how often an unknown key may make the table be read again


class ObjectInfo(Protocol):
    """What the gateway reads of an object version (the store's manifest)."""

    @property
    def name(self) -> str:
        """The object's key."""
        ...

    @property
    def size(self) -> int:
        """Plaintext bytes."""
        ...

    @property
    def version(self) -> int:
        """Its version (writes and policy changes add one)."""
        ...

    @property
    def policy(self) -> Policy:
        """How its chunks are kept."""
        ...

    @property
    def created_at(self) -> float:
        """When this version was written (seconds since the epoch)."""
        ...

    @property
    def content_id(self) -> str:
        """The same across policy changes of one write."""
        ...


class Page(Protocol):
    """One page of a listing (kvs.store.ListPage)."""

    @property
    def objects(self) -> Sequence[ObjectInfo]:
        """The page's objects, in name order."""
        ...

    @property
    def next_after(self) -> str | None:
        """The name to list after for the next page; None on the last page."""
        ...


class Objects(Protocol):
    """What the gateway needs of the store engine (kvs.store.ObjectStore)."""

    async def put(
        self,
        bucket: str,
        name: str,
        chunks: AsyncIterable[Piece],
        policy: Policy,
        size: int | None = None,
    ) -> ObjectInfo:
        """Write an object from its chunks (streamed, `size` bytes when known); its new
        version's manifest."""
        ...

    def get(
        self, bucket: str, name: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Plaintext bytes [start, end) of the object, chunk by chunk."""
        ...

    async def head(self, bucket: str, name: str) -> ObjectInfo | None:
        """The object's current manifest, None if absent."""
        ...

    async def delete(self, bucket: str, name: str) -> bool:
        """Delete the object (manifest then blobs); whether it existed."""
        ...

    async def list(self, bucket: str, prefix: str = "", after: str = "", limit: int = 1000) -> Page:
        """Objects whose name starts with `prefix`, after `after`, in name order."""
        ...

    async def set_policy(self, bucket: str, name: str, policy: Policy) -> ObjectInfo:
        """Re-encode the object under `policy` (a new version; reads never fail meanwhile)."""
        ...


async def read_versioned(objects: Objects, bucket: str, name: str) -> tuple[int, bytes] | None:
    """(version, bytes) of a small object, None if absent."""
    info = await objects.head(bucket, name)
    if info is None:
        return None
    return info.version, b"".join([piece async for piece in objects.get(bucket, name)])


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@dataclass
class MarksFile:
    """The gateway's sealed version marks in a file; raised under a lock, never lowered."""

    path: Path
    key: bytes = field(repr=False)
    rng: Callable[[int], bytes] = os.urandom

    def _read(self) -> GatewayMarks:
        try:
            sealed = self.path.read_bytes()
        except FileNotFoundError:
            return GatewayMarks({})
        return GatewayMarks.open(self.key, sealed)

    async def read(self) -> GatewayMarks:
        """The marks now (none before the first save)."""
        return await asyncio.to_thread(self._read)

    def _raise(self, name: str, version: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a gateway and `kvs keys` may raise at once
            marks = self._read()
            if marks.at_least(name) >= version:
                return
            temp = self.path.with_name(f".{self.path.name}.tmp")
            with open(temp, "wb") as file:
                file.write(marks.raised(name, version).seal(self.key, self.rng))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)

    async def raise_to(self, name: str, version: int) -> None:
        """Make `version` the lowest of `name` any gateway here accepts from now on."""
        await asyncio.to_thread(self._raise, name, version)


@dataclass
class GatewayState:
    """The key table and bucket policies over `objects`, cached for `ttl` seconds."""

    objects: Objects
    default_policy: Policy
    internal_policy: Policy  # how the gateway's own objects are kept
    clock: Callable[[], float] = time.monotonic
    ttl: float = 2.0
    marks: MarksFile | None = None  # versions of the key table and registry saved here
    _keys: tuple[float, KeyTable] | None = field(default=None, init=False)
    _keys_version: int | None = field(default=None, init=False)  # of the table read (0: none)
    _legacy: tuple[float, dict[str, str]] | None = field(default=None, init=False)
    _policies: dict[str, tuple[float, str]] = field(default_factory=dict, init=False)
    _noted: set[str] = field(default_factory=set, init=False)  # buckets known to have markers
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def _fresh(self, cached: tuple[float, object] | None) -> bool:
        return cached is not None and self.clock() - cached[0] < self.ttl

    async def key_table(self, reload: bool = False) -> KeyTable:
        """The key table (empty before the first key is made), cached for `ttl` seconds.

        `reload` (a key the cached table does not know) reads it again, waiting first until
        the last read is `RELOAD_EVERY` seconds old: a new key works at once (within that
        wait), and unknown keys cannot make the gateway read its table more often.
        """
        if reload and self._keys is not None:
            loaded = self._keys[0]
            async with self._lock:
                if self._keys is not None and self._keys[0] == loaded:  # nobody reloaded since
                    wait = RELOAD_EVERY - (self.clock() - loaded)
                    if wait > 0:
                        await asyncio.sleep(wait)
                    self._keys = None
        if self._keys is not None and self._fresh(self._keys):
            return self._keys[1]
        async with self._lock:
            if self._keys is None or not self._fresh(self._keys):
                found = await self._read_fresh(KEY_TABLE, "key table")
                table = KeyTable() if found is None else KeyTable.from_bytes(found[1])
                self._keys, self._keys_version = (self.clock(), table), found[0] if found else 0
            return self._keys[1]

    async def save_keys(self, table: KeyTable) -> None:
        """Store `table` as the key table (and use it at once here).

        When this state read the table before, the stored one must still be the one it read:
        a change made meanwhile elsewhere (another `kvs keys` command) is never overwritten,
        so a revocation cannot be undone by an addition racing it (KvsKeyError: run again).
        """
        async with self._lock:
            if self._keys_version is not None:
                current = await self.objects.head(RESERVED, KEY_TABLE)
                if (0 if current is None else current.version) != self._keys_version:
                    self._keys = self._keys_version = None
                    raise KvsKeyError(
                        "the KVS key table changed since it was read (another `meterseal kvs "
                        "keys` command?): nothing was saved; run the command again"
                    )
            data = _one(table.to_bytes())
            info = await self.objects.put(RESERVED, KEY_TABLE, data, self.internal_policy)
            self._keys, self._keys_version = (self.clock(), table), info.version
            if self.marks is not None:
                await self.marks.raise_to(KEY_TABLE, info.version)

    async def _read_fresh(self, name: str, what: str) -> tuple[int, bytes] | None:
        """(version, bytes) of a reserved object; RolledBack when older than the marks say."""
        found = await read_versioned(self.objects, RESERVED, name)
        if self.marks is None:
            return found
        version, lowest = 0 if found is None else found[0], (await self.marks.read()).at_least(name)
        if version < lowest:
            served = "no" if found is None else f"version {version} of the"
            raise RolledBack(
                f"the storage nodes served {served} gateway's {what}, but version {lowest} was "
                f"saved (marks in {self.marks.path}): a rolled-back or lost {what}, refused"
            )
        if version > lowest:  # saved by another gateway: a restart here accepts no older one
            await self.marks.raise_to(name, version)
        return found

    async def _legacy_registry(self) -> dict[str, str]:
        """The one-map registry earlier versions wrote (`BUCKET_POLICIES`), read only."""
        if self._legacy is not None and self._fresh(self._legacy):
            return self._legacy[1]
        found = await self._read_fresh(BUCKET_POLICIES, "bucket registry")
        try:
            policies = {} if found is None else dict(cbor2.loads(found[1]))
        except (ValueError, TypeError, cbor2.CBORDecodeError) as exc:
            raise KvsError(f"the gateway's bucket policies are unreadable: {exc}") from None
        self._legacy = (self.clock(), policies)
        return policies

    async def bucket_policy(self, bucket: str) -> Policy:
        """The policy new objects of `bucket` get unless the writer names one."""
        cached = self._policies.get(bucket)
        if cached is not None and self._fresh(cached):
            text = cached[1]
        else:
            found = await read_versioned(self.objects, RESERVED, POLICY_OF + bucket)
            if found is not None:
                text = found[1].decode()
            else:
                text = (await self._legacy_registry()).get(bucket, "")
            self._policies[bucket] = (self.clock(), text)
        return parse_policy(text) if text else self.default_policy

    async def buckets(self) -> list[str]:
        """Every bucket written to through a gateway (scrub and sweep walk them: ids hide
        names): one marker object each, so no two gateways' additions can overwrite each other."""
        names = set(await self._legacy_registry())
        after: str | None = ""
        while after is not None:
            page = await self.objects.list(RESERVED, BUCKET_MARK, after, 1000)
            names |= {info.name.removeprefix(BUCKET_MARK) for info in page.objects}
            after = page.next_after
        self._noted |= names
        return sorted(names)

    async def note_bucket(self, bucket: str) -> None:
        """Remember `bucket` (its marker object) if it is new: before its first object."""
        if bucket in self._noted:
            return
        marker = BUCKET_MARK + bucket
        if (
            await self.objects.head(RESERVED, marker) is None
            and bucket not in await self._legacy_registry()
        ):
            await self.objects.put(RESERVED, marker, _one(b""), self.internal_policy)
        self._noted.add(bucket)

    async def set_bucket_policy(self, bucket: str, policy: Policy) -> None:
        """Make `policy` the default of `bucket`."""
        data = _one(str(policy).encode())
        await self.objects.put(RESERVED, POLICY_OF + bucket, data, self.internal_policy)
        self._policies[bucket] = (self.clock(), str(policy))
        await self.note_bucket(bucket)
