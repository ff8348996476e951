"""Freshness: storage nodes serving an older sealed manifest (kept with its blobs) are refused.

The attacker here controls the nodes and the catalog: it snapshots what they hold and later
puts the snapshot back, which every seal still opens. The store refuses a manifest older than
one it saw; the gateway's marks file refuses an old key table after a restart and after a
revocation made by another process.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
from pathlib import Path

import httpx
import pytest

from meterseal.errors import KvsError
from meterseal.kvs.freshness import GatewayMarks, RolledBack, VersionMarks
from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.kvs.gateway_keys import KeyTable, Right, Scope
from meterseal.kvs.gateway_state import KEY_TABLE, RESERVED, GatewayState
from meterseal.kvs.nodes import MemoryCatalog, MemoryNode
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.service import MARKS_FILE, StoreLayout, build_gateway, gateway_state
from meterseal.kvs.store import ObjectStore
from meterseal.runtime.http import ThreadedServer
from tests.kvs.store_fixtures import MASTER, memory_store, seeded

Snapshot = tuple[dict[str, dict[str, bytes]], list[dict[str, bytes]]]


def _snapshot(nodes: list[MemoryNode], catalog: MemoryCatalog) -> Snapshot:
    """What a malicious storage operator keeps: every catalog entry and blob now."""
    return copy.deepcopy(catalog.entries), [dict(node.blobs) for node in nodes]


def _roll_back(nodes: list[MemoryNode], catalog: MemoryCatalog, kept: Snapshot) -> None:
    """Serve the kept catalog again, with the kept blobs (newer blobs stay too)."""
    catalog.entries = copy.deepcopy(kept[0])
    for node, blobs in zip(nodes, kept[1], strict=True):
        node.blobs.update(blobs)


def _twin(store: ObjectStore, catalog: MemoryCatalog, clock: object) -> ObjectStore:
    return ObjectStore(
        list(store.nodes),
        catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=clock,  # type: ignore[arg-type]
        rng=seeded(9).randbytes,
        chunk_size=store.chunk_size,
    )


def test_an_object_rolled_back_to_an_older_version_is_refused() -> None:
    async def scenario() -> None:
        store, nodes, catalog = memory_store(5)
        await store.put_bytes("b", "x", b"old contents")
        kept = _snapshot(nodes, catalog)
        await store.put_bytes("b", "x", b"new contents")
        _roll_back(nodes, catalog, kept)
        with pytest.raises(RolledBack, match=r"version 1 of b/x, older than version 2"):
            await store.head("b", "x")
        with pytest.raises(RolledBack):
            b"".join([piece async for piece in store.get("b", "x")])

    asyncio.run(scenario())


def test_a_deleted_object_served_again_is_refused_and_a_new_write_goes_on() -> None:
    async def scenario() -> None:
        store, nodes, catalog = memory_store(5)
        await store.put_bytes("b", "x", b"deleted contents")
        kept = _snapshot(nodes, catalog)
        assert await store.delete("b", "x")
        _roll_back(nodes, catalog, kept)
        with pytest.raises(RolledBack):
            await store.head("b", "x")
        catalog.entries = {}  # the operator gives up: the name is free again
        info = await store.put_bytes("b", "x", b"written again")
        assert info.version == 2  # after the deleted one: that one stays refused
        assert await store.head("b", "x") == info

    asyncio.run(scenario())


def test_another_gateways_delete_and_new_write_are_not_taken_for_a_rollback() -> None:
    async def scenario() -> None:
        ticks = itertools.count(1_780_000_000)
        clock = lambda: float(next(ticks))  # noqa: E731 - two gateways, time goes on
        first, _nodes, catalog = memory_store(5)
        first.clock = clock
        second, third = _twin(first, catalog, clock), _twin(first, catalog, clock)
        await first.put_bytes("b", "x", b"one")
        await first.put_bytes("b", "x", b"two")  # the first saw version 2
        assert await third.delete("b", "x")
        info = await second.put_bytes("b", "x", b"three")  # never saw x: version 1, later
        assert info.version == 1
        assert await first.head("b", "x") == info
        assert b"".join([p async for p in first.get("b", "x")]) == b"three"
        assert [o.name for o in (await first.list("b")).objects] == ["x"]

    asyncio.run(scenario())


def test_marks_refuse_only_what_is_older_in_version_and_time() -> None:
    marks = VersionMarks()
    entry = ("bucket-id", "key")
    marks.check(entry, 3, 100.0, "b/x")
    marks.check(entry, 4, 90.0, "b/x")  # newer version from a gateway whose clock is behind
    with pytest.raises(RolledBack):
        marks.check(entry, 3, 100.0, "b/x")
    marks.check(entry, 1, 101.0, "b/x")  # written after a delete elsewhere: versions anew
    marks.check(entry, 1, 101.0, "b/x")  # and read again
    for old in (3, 4):  # from before that write: refused although their versions are higher
        with pytest.raises(RolledBack):
            marks.check(entry, old, 100.0, "b/x")
    marks.check(entry, 2, 102.0, "b/x")
    assert marks.next_version(entry, None) == 2
    marks.deleted(entry, 2, 103.0)
    with pytest.raises(RolledBack):
        marks.check(entry, 2, 102.0, "b/x")
    assert marks.next_version(entry, None) == 3


def test_sealed_marks_open_only_under_their_key() -> None:
    marks = GatewayMarks({}).raised("keys", 3).raised("keys", 2).merged(GatewayMarks({"b": 1}))
    assert marks.versions == {"keys": 3, "b": 1}
    sealed = marks.seal(bytes(32), os.urandom)
    assert GatewayMarks.open(bytes(32), sealed) == marks
    with pytest.raises(KvsError, match="marks do not open"):
        GatewayMarks.open(bytes(31) + b"\x01", sealed)


READER = Scope("meters", "", frozenset((Right.READ, Right.WRITE)))


def _table_with_a_revoked_key(
    tmp_path: Path,
) -> tuple[list[MemoryNode], MemoryCatalog, Snapshot, str, StoreLayout]:
    """A key table saved with a key (kept by the operator), then again with it revoked."""
    store, nodes, catalog = memory_store(5)
    layout, policy = StoreLayout(tmp_path, 5), parse_policy("ec:3+2")
    state = gateway_state(store, layout, policy)
    table, new = KeyTable().add(READER, "reader", 1.0, os.urandom)
    asyncio.run(state.save_keys(table))
    kept = _snapshot(nodes, catalog)
    asyncio.run(state.save_keys(table.revoke(new.key.key_id, 2.0)))
    return nodes, catalog, kept, new.secret, layout


def _restarted(
    nodes: list[MemoryNode], catalog: MemoryCatalog, layout: StoreLayout
) -> GatewayState:
    """A gateway started again (or `kvs keys`) over the same nodes: its store saw nothing."""
    store = ObjectStore(
        nodes,
        catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=lambda: 1_780_000_000.0,
        rng=seeded(11).randbytes,
    )
    return gateway_state(store, layout, parse_policy("ec:3+2"))


def test_a_restarted_gateway_refuses_a_rolled_back_key_table(tmp_path: Path) -> None:
    nodes, catalog, kept, _secret, layout = _table_with_a_revoked_key(tmp_path)
    assert (tmp_path / MARKS_FILE).exists()
    _roll_back(nodes, catalog, kept)
    state = _restarted(nodes, catalog, layout)
    with pytest.raises(RolledBack, match="version 1 of the gateway's key table, but version 2"):
        asyncio.run(state.key_table())
    catalog.entries = {}  # a table that vanished is refused as well: no key works, none revives
    with pytest.raises(RolledBack, match="served no gateway's key table"):
        asyncio.run(_restarted(nodes, catalog, layout).key_table())


def test_the_running_gateway_refuses_the_old_table_after_a_revocation_elsewhere(
    tmp_path: Path,
) -> None:
    store, nodes, catalog = memory_store(5)
    layout, policy = StoreLayout(tmp_path, 5), parse_policy("ec:3+2")
    table, new = KeyTable().add(READER, "reader", 1.0, os.urandom)
    asyncio.run(gateway_state(store, layout, policy).save_keys(table))
    kept = _snapshot(nodes, catalog)
    app = build_gateway(store, layout, policy, KvsMetrics())
    with ThreadedServer(app) as url:
        auth = {"Authorization": f"Bearer {new.secret}"}
        with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
            assert client.put("/v1/kvs/meters/a", content=b"a").status_code == 201
            # `meterseal kvs keys revoke` in another process: its own store, the same marks
            keys = _restarted(nodes, catalog, layout)
            asyncio.run(keys.save_keys(asyncio.run(keys.key_table()).revoke(new.key.key_id, 2.0)))
            own = store.keys(RESERVED).bucket_id  # the nodes hide the revocation, only that
            catalog.entries[own] = copy.deepcopy(kept[0][own])
            refused = asyncio.run(_wait_refused(client))
            assert refused.status_code == 503
            assert refused.json() == {"detail": "the gateway cannot check API keys now"}


async def _wait_refused(client: httpx.Client) -> httpx.Response:
    """The gateway's answer once its cached table (2 s) has expired."""
    for _ in range(100):
        response = await asyncio.to_thread(client.get, "/v1/kvs/meters/a")
        if response.status_code != 200:
            return response
        await asyncio.sleep(0.1)
    raise AssertionError("the revoked key still works")


def test_marks_of_a_key_table_name_only_the_gateways_objects(tmp_path: Path) -> None:
    nodes, catalog, _kept, _secret, layout = _table_with_a_revoked_key(tmp_path)
    state = _restarted(nodes, catalog, layout)
    assert state.marks is not None
    assert asyncio.run(state.marks.read()).versions == {KEY_TABLE: 2}
