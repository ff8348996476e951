"""The ordered key-value store CascaDB runs on, an in-memory one, and a statement's write buffer."""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

Write = tuple[bytes, bytes | None]  # (key, value); None deletes the key


class OrderedKv(Protocol):
    """Keys and values as bytes, scanned in key order; a batch of writes is atomic."""

    def get(self, key: bytes) -> bytes | None:
        """The value of `key`, None when absent."""
        ...

    def put(self, key: bytes, value: bytes) -> None:
        """Store `value` under `key`."""
        ...

    def delete(self, key: bytes) -> None:
        """Remove `key` (absent: nothing happens)."""
        ...

    def scan(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for start <= key < end (end None: to the last key), in key order."""
        ...

    def write(self, batch: Sequence[Write]) -> None:
        """Apply every write of `batch` or none of them."""
        ...


def get_many(kv: OrderedKv, keys: Sequence[bytes]) -> list[bytes | None]:
    """The values of `keys` in one call where the store can (a remote store: one round)."""
    many = getattr(kv, "get_many", None)
    if many is not None:
        found: list[bytes | None] = many(keys)
        return found
    return [kv.get(key) for key in keys]


class MemoryKv:
    """An OrderedKv in memory: a sorted key list beside a dict, guarded by a lock."""

    def __init__(self) -> None:
        self._keys: list[bytes] = []
        self._values: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def get(self, key: bytes) -> bytes | None:
        """The value of `key`, None when absent."""
        return self._values.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        """Store `value` under `key`."""
        self.write([(key, value)])

    def delete(self, key: bytes) -> None:
        """Remove `key` (absent: nothing happens)."""
        self.write([(key, None)])

    def scan(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for start <= key < end, in key order, as of the call."""
        with self._lock:
            low = bisect.bisect_left(self._keys, start)
            high = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
            keys = self._keys[low:high]
            values = self._values
            found = [(k, values[k]) for k in keys]
        return iter(found)

    def write(self, batch: Sequence[Write]) -> None:
        """Apply `batch` under the lock: readers see all of it or none."""
        with self._lock:
            for key, value in batch:
                present = key in self._values
                if value is None:
                    if present:
                        del self._values[key]
                        del self._keys[bisect.bisect_left(self._keys, key)]
                    continue
                if not present:
                    bisect.insort(self._keys, key)
                self._values[key] = value

    def __len__(self) -> int:
        """How many keys are stored."""
        return len(self._values)


class Overlay:
    """Writes buffered over an OrderedKv: reads see them, `commit` applies them as one batch."""

    def __init__(self, base: OrderedKv) -> None:
        self.base = base
        self._pending: dict[bytes, bytes | None] = {}
        self._order: list[bytes] = []  # the pending keys, sorted (scans bisect it)

    def get(self, key: bytes) -> bytes | None:
        """The buffered value of `key`, else the store's."""
        if key in self._pending:
            return self._pending[key]
        return self.base.get(key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The buffered or stored values of `keys` (one call to the store for the rest)."""
        unknown = [k for k in keys if k not in self._pending]
        stored = dict(zip(unknown, get_many(self.base, unknown), strict=True))
        return [self._pending[k] if k in self._pending else stored[k] for k in keys]

    def put(self, key: bytes, value: bytes) -> None:
        """Buffer a put."""
        self._note(key)
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        """Buffer a delete."""
        self._note(key)
        self._pending[key] = None

    def _note(self, key: bytes) -> None:
        if key not in self._pending:
            bisect.insort(self._order, key)

    def scan(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """The store's range merged with the buffered writes, in key order."""
        if not self._pending:
            yield from self.base.scan(start, end)
            return
        low = bisect.bisect_left(self._order, start)
        high = len(self._order) if end is None else bisect.bisect_left(self._order, end)
        mine = [(k, self._pending[k]) for k in self._order[low:high]]
        base = ((k, v) for k, v in self.base.scan(start, end) if k not in self._pending)
        for key, value in heapq.merge(base, mine, key=lambda kv: kv[0]):
            if value is not None:
                yield key, value

    def write(self, batch: Sequence[Write]) -> None:
        """Buffer every write of `batch` (applied together at commit)."""
        for key, _ in batch:
            self._note(key)
        self._pending.update(batch)

    def writes(self) -> list[Write]:
        """The buffered writes, in key order."""
        return [(k, self._pending[k]) for k in self._order]

    def commit(self) -> None:
        """Apply the buffered writes as one atomic batch and forget them."""
        if self._pending:
            self.base.write(self.writes())
        self.rollback()

    def rollback(self) -> None:
        """Forget the buffered writes."""
        self._pending.clear()
        self._order.clear()

    @property
    def dirty(self) -> bool:
        """Whether writes are buffered."""
        return bool(self._pending)
