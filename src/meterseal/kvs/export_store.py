"""The exported objects in the secure KVS itself: an `ObjectMap` over an `ObjectStore`.

The exporter and the readers are synchronous (the audit and the fraud job are); this map runs
the store's coroutines on an event loop of its own, so a store whose nodes hold connections
(NATS) keeps them on one loop. Objects go to one bucket under one policy (None: the store's
default); `put` streams the object in the store's chunks, `get` reads it whole (a customer's
month is about a megabyte).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from meterseal.errors import ObjectNotFound
from meterseal.kvs.export_objects import ObjectMap
from meterseal.kvs.policy import Policy
from meterseal.kvs.store import ObjectStore

BUCKET = "originals"
PAGE = 1000
T = TypeVar("T")


class StoreObjects(ObjectMap):
    """Whole objects of one bucket of an ObjectStore, through a private event loop."""

    def __init__(
        self, store: ObjectStore, bucket: str = BUCKET, policy: Policy | None = None
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.policy = policy
        self._loop = asyncio.new_event_loop()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run one of the store's coroutines to its end on this map's loop."""
        return self._loop.run_until_complete(work)

    def put(self, name: str, data: bytes) -> None:
        """Store `data` as `name` under the map's policy (a new version if it exists)."""
        self.run(self.store.put_bytes(self.bucket, name, data, self.policy))

    def get(self, name: str) -> bytes | None:
        """The object `name`, None when absent."""
        try:
            return self.run(self.store.get_bytes(self.bucket, name))
        except ObjectNotFound:
            return None

    def names(self, prefix: str) -> list[str]:
        """The names starting with `prefix`, in order (every page of the listing)."""
        out: list[str] = []
        after: str | None = ""
        while after is not None:
            page = self.run(self.store.list(self.bucket, prefix, after, PAGE))
            out += [info.name for info in page.objects]
            after = page.next_after
        return out

    def close(self) -> None:
        """Close the map's event loop."""
        self._loop.close()
