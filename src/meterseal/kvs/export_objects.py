"""Where exported objects go and come from: a name -> bytes map, in memory or in the KVS.

The exporter and the readers see the KVS as a synchronous, ordered map of whole objects
(`ObjectMap`): a customer's month is about a megabyte, and the audit and the fraud job are
synchronous. `MemoryObjects` is the in-memory map (tests, dry runs); `export_store` puts the
same interface over the KVS's `ObjectStore`.
"""

from __future__ import annotations

import bisect
from typing import Protocol


class ObjectMap(Protocol):
    """Whole objects by name, listed in name order."""

    def put(self, name: str, data: bytes) -> None:
        """Store `data` as `name` (replacing an object of that name)."""
        ...

    def get(self, name: str) -> bytes | None:
        """The object `name`, None when absent."""
        ...

    def names(self, prefix: str) -> list[str]:
        """The names starting with `prefix`, in order."""
        ...


class MemoryObjects(ObjectMap):
    """An in-memory ordered map of objects."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._order: list[str] = []

    def put(self, name: str, data: bytes) -> None:
        """Store `data` as `name`."""
        if name not in self.objects:
            bisect.insort(self._order, name)
        self.objects[name] = bytes(data)

    def get(self, name: str) -> bytes | None:
        """The object `name`, None when absent."""
        return self.objects.get(name)

    def names(self, prefix: str) -> list[str]:
        """The names starting with `prefix`, in order."""
        at = bisect.bisect_left(self._order, prefix)
        out = []
        for name in self._order[at:]:
            if not name.startswith(prefix):
                break
            out.append(name)
        return out
