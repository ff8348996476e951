"""The store's paged listing over its name index: correct after writes anywhere, O(page) opens."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.kvs.manifest import Manifest
from meterseal.kvs.nodes import BlobNode, Catalog, LocalDirCatalog, LocalDirNode
from meterseal.kvs.sealing import BucketKeys, derive_bucket_key
from meterseal.kvs.store import ObjectStore
from tests.kvs.store_fixtures import MASTER, memory_store, seeded


def _twin(store: ObjectStore, catalog: Catalog, seed: int) -> ObjectStore:
    """A second store (another gateway) over the same nodes and catalog, on the same clock."""
    return ObjectStore(
        list(store.nodes),
        catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=store.clock,
        rng=seeded(seed).randbytes,
        chunk_size=store.chunk_size,
    )


def _counting(store: ObjectStore) -> list[str]:
    """Count the manifests `store` opens (each call's catalog key)."""
    opened: list[str] = []
    real = store.open_entry

    def counted(keys: BucketKeys, key: str, sealed: bytes) -> Manifest:
        opened.append(key)
        return real(keys, key, sealed)

    store.open_entry = counted  # type: ignore[method-assign]
    return opened


async def _all_names(store: ObjectStore, prefix: str, limit: int) -> list[str]:
    """Every name under `prefix`, page by page, checking each page's order and size."""
    names: list[str] = []
    after = ""
    while True:
        page = await store.list("b", prefix=prefix, after=after, limit=limit)
        assert len(page.objects) <= limit
        names += [o.name for o in page.objects]
        if page.next_after is None:
            return names
        assert len(page.objects) == limit
        assert page.next_after == names[-1]
        after = page.next_after


_NAMES = st.sampled_from(["a", "a/1", "a/2", "a/10", "b", "b/x", "ba", "c/d/e", "z"])
_OPS = st.lists(
    st.tuples(st.sampled_from(["put", "delete", "list"]), st.integers(0, 1), _NAMES),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, limit=st.integers(1, 4), prefix=st.sampled_from(["", "a", "a/", "b", "q"]))
def test_pages_follow_writes_by_this_store_and_another(
    ops: list[tuple[str, int, str]], limit: int, prefix: str
) -> None:
    """Pages equal the model after puts/deletes through either of two stores on one catalog."""

    async def scenario() -> None:
        first, _, catalog = memory_store(3)
        ticks = itertools.count(1_780_000_000)
        # time goes on: a write after another gateway's delete is later than the deleted one
        first.clock = lambda: float(next(ticks))
        stores = [first, _twin(first, catalog, 8)]
        model: set[str] = set()
        for op, which, name in ops:
            store = stores[which]
            if op == "put":
                await store.put_bytes("b", name, name.encode())
                model.add(name)
            elif op == "delete":
                assert await store.delete("b", name) == (name in model)
                model.discard(name)
            for reader in stores:
                want = sorted(n for n in model if n.startswith(prefix))
                assert await _all_names(reader, prefix, limit) == want

    asyncio.run(scenario())


def test_a_later_page_opens_only_its_own_manifests() -> None:
    """Once the index is built, a page opens limit + 1 manifests, not the bucket's 60."""

    async def scenario() -> None:
        writer, _, catalog = memory_store(3)
        for i in range(60):
            await writer.put_bytes("b", f"m{i:03}", b"x")
        reader = _twin(writer, catalog, 9)
        opened = _counting(reader)
        first = await reader.list("b", limit=10)
        assert len(opened) == 60 + 11  # the index is built once: every key opened, then the page
        opened.clear()
        second = await reader.list("b", after=first.next_after or "", limit=10)
        assert [o.name for o in second.objects] == [f"m{i:03}" for i in range(10, 20)]
        assert len(opened) == 11
        await writer.put_bytes("b", "m100", b"y")  # another gateway's write: one new key
        await writer.delete("b", "m015")
        opened.clear()
        third = await reader.list("b", after="m010", limit=10)
        assert "m015" not in [o.name for o in third.objects]
        assert len(opened) == 1 + 11
        own = _counting(writer)
        await writer.list("b", limit=10)  # the writer learnt its names from its own puts
        assert len(own) == 11

    asyncio.run(scenario())


def test_local_dir_catalog_lists_through_the_index(tmp_path: Path) -> None:
    """Over local dirs too: a second store's put and delete show in the first store's pages."""

    async def scenario() -> None:
        nodes: list[BlobNode] = [LocalDirNode(f"n{i}", tmp_path / f"n{i}") for i in range(2)]
        catalog = LocalDirCatalog(tmp_path / "catalog")
        kwargs: dict[str, Any] = {"clock": lambda: 1_780_000_000.0}
        key = lambda bucket: derive_bucket_key(MASTER, bucket)  # noqa: E731
        one = ObjectStore(nodes, catalog, key, rng=seeded(1).randbytes, **kwargs)
        two = ObjectStore(nodes, catalog, key, rng=seeded(2).randbytes, **kwargs)
        for name in ["x1", "x2", "x3"]:
            await one.put_bytes("b", name, b"d")
        assert await _all_names(one, "", 2) == ["x1", "x2", "x3"]
        await two.put_bytes("b", "x0", b"d")
        await two.delete("b", "x2")
        assert await _all_names(one, "x", 2) == ["x0", "x1", "x3"]

    asyncio.run(scenario())
