"""The store's name index of a bucket: catalog keys -> object names, for paged listing.

A catalog key is a MAC of the object's name, so the name behind a key never changes: the
index opens a key's manifest once (or learns it from this store's own put) and keeps it.
Each page lists the bucket's keys (cheap: no manifest read), opens only keys it has not
seen (those another gateway wrote), forgets keys gone (deleted anywhere), and then opens
only the manifests of the page itself. A page costs O(page) manifest opens, not O(bucket).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable, Sequence

from meterseal.errors import KvsError
from meterseal.kvs.manifest import ListPage, Manifest, ObjectInfo

__all__ = ["NameIndex", "page_of"]

OPEN_BATCH = 64  # manifests opened at once (catalog reads in flight)

Opener = Callable[[str], Awaitable[Manifest | None]]  # catalog key -> manifest (KvsError: bad)
Loader = Callable[[str], Awaitable[Manifest | None]]  # name -> current manifest


class NameIndex:
    """One bucket's known catalog keys and their names, with the names sorted."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # catalog key -> name
        self._listed: frozenset[str] = frozenset()
        self._sorted: list[str] = []

    def learn(self, key: str, name: str) -> None:
        """Record this store's own write of `name` at `key`."""
        self.names[key] = name

    async def refresh(self, keys: Sequence[str], opener: Opener) -> list[str]:
        """The names of `keys` (the bucket's keys now), sorted; unseen keys are opened."""
        listed = frozenset(keys)
        if listed == self._listed and all(k in self.names for k in listed):
            return self._sorted
        unseen = [k for k in keys if k not in self.names]
        for start in range(0, len(unseen), OPEN_BATCH):
            batch = unseen[start : start + OPEN_BATCH]
            opened = await asyncio.gather(*(_open(opener, k) for k in batch))
            for key, found in zip(batch, opened, strict=True):
                if found is not None:
                    self.names[key] = found.name
        for key in [k for k in self.names if k not in listed]:
            del self.names[key]
        self._listed = listed
        self._sorted = sorted(self.names.values())
        return self._sorted


async def _open(opener: Opener, key: str) -> Manifest | None:
    try:
        return await opener(key)
    except KvsError:
        return None  # an entry that does not open is not listed (scrub reports it)


async def page_of(
    names: Sequence[str], loader: Loader, prefix: str, after: str, limit: int
) -> ListPage:
    """The page of `names` (sorted) after `after` with `prefix`: `limit` + 1 manifests opened."""
    if after >= prefix:
        position = bisect.bisect_right(names, after)
    else:
        position = bisect.bisect_left(names, prefix)
    found: list[ObjectInfo] = []
    while len(found) <= limit and position < len(names):
        want = limit + 1 - len(found)
        batch = [n for n in names[position : position + want] if n.startswith(prefix)]
        more = len(batch) == want
        for manifest in await asyncio.gather(*(_open(loader, n) for n in batch)):
            if manifest is not None:
                found.append(ObjectInfo.of(manifest))
        if not more:
            break
        position += want
    page = found[:limit]
    return ListPage(page, page[-1].name if len(found) > limit else None)
