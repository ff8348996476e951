"""Policy changes under concurrent reads; nothing stored in the clear."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from meterseal.errors import KvsError
from meterseal.kvs.nodes import LocalDirCatalog, LocalDirNode
from meterseal.kvs.policy import ErasureCoded, Hybrid, Policy, Replication, parse_policy
from meterseal.kvs.repair import scrub
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.store import READ_AHEAD, ObjectStore
from tests.kvs.store_fixtures import MASTER, SMALL_CHUNK, memory_store

CHANGES: list[Policy] = [
    ErasureCoded(3, 2),
    Hybrid(2, 1),
    Replication(2),
    ErasureCoded(2, 1),
    Replication(3),
]


def test_a_policy_change_under_concurrent_reads_never_fails_a_read() -> None:
    store, nodes, _ = memory_store(6, yielding=True)
    data = os.urandom(SMALL_CHUNK * 9 + 5)

    async def reader(stop: asyncio.Event, done: list[int]) -> None:
        while not stop.is_set():
            assert await store.get_bytes("meters", "hot") == data
            assert await store.get_bytes("meters", "hot", 70, 400) == data[70:400]
            done.append(1)

    async def scenario() -> None:
        await store.put_bytes("meters", "hot", data, Replication(3))
        stop, done = asyncio.Event(), list[int]()
        readers = [asyncio.create_task(reader(stop, done)) for _ in range(8)]
        versions = []
        for policy in CHANGES:
            await asyncio.sleep(0)
            versions.append((await store.set_policy("meters", "hot", policy)).version)
        stop.set()
        await asyncio.gather(*readers)
        assert versions == [2, 3, 4, 5, 6]
        assert len(done) >= 8
        info = await store.head("meters", "hot")
        assert info is not None
        assert info.policy == CHANGES[-1]
        assert (await store.set_policy("meters", "hot", CHANGES[-1])).version == 6  # no-op
        # only the last version's blobs remain: 3 copies of 10 sealed chunks
        assert sum(len(n.blobs) for n in nodes) == 3 * 10
        assert (await scrub(store, ["meters"])).healthy

    asyncio.run(scenario())


def test_a_reader_does_not_switch_to_other_content() -> None:
    store, _, _ = memory_store(3, yielding=True)

    async def scenario() -> None:
        chunks = READ_AHEAD + 3  # more than a reader has read ahead when the new one lands
        await store.put_bytes("meters", "x", b"a" * SMALL_CHUNK * chunks, Replication(1))
        stream = store.get("meters", "x")
        assert await anext(stream) == b"a" * SMALL_CHUNK
        await store.put_bytes("meters", "x", b"b" * SMALL_CHUNK * chunks, Replication(1))
        # the old version is gone: an error, never the new content after the old
        got: list[bytes] = []

        async def drain() -> None:
            async for piece in stream:
                got.append(piece)

        with pytest.raises(KvsError, match="too few intact blobs"):
            await drain()
        assert set(b"".join(got)) <= {ord("a")}

    asyncio.run(scenario())


def _stored_bytes(root: Path) -> list[tuple[str, bytes]]:
    return [
        (p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*") if p.is_file()
    ]


def test_nodes_and_catalog_never_hold_plaintext_names_or_buckets(tmp_path: Path) -> None:
    nodes = [LocalDirNode(f"d{i}", tmp_path / f"d{i}") for i in range(5)]
    store = ObjectStore(
        nodes,
        LocalDirCatalog(tmp_path / "catalog"),
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=time.time,
        rng=os.urandom,
        chunk_size=SMALL_CHUNK,
    )
    secret = b"customer-4711 kWh 0001.234;" * 20
    bucket, name = "tenant-acme-readings", "customers/4711/2026-11.cbor"

    async def scenario() -> None:
        for text in ["rep:3", "ec:3+2", "hybrid:2+1"]:
            await store.put_bytes(bucket, f"{name}.{text}", secret, parse_policy(text))
        await store.set_policy(bucket, f"{name}.rep:3", ErasureCoded(2, 2))
        assert await store.get_bytes(bucket, f"{name}.ec:3+2") == secret

    asyncio.run(scenario())
    stored = _stored_bytes(tmp_path)
    assert len(stored) > 20
    needles = [secret[i : i + 16] for i in range(0, len(secret) - 16, 8)]
    needles += [b"acme", bucket.encode(), b"customers/4711", b"2026-11"]
    for path, content in stored:
        for needle in needles:
            assert needle not in content, f"{needle!r} in {path}"
        assert set(path) <= set("0123456789abcdef/dcatlog"), path  # hex ids, no names


def test_local_dir_nodes_taken_away_mid_read_are_survived(tmp_path: Path) -> None:
    nodes = [LocalDirNode(f"d{i}", tmp_path / f"d{i}") for i in range(5)]
    store = ObjectStore(
        nodes,
        LocalDirCatalog(tmp_path / "catalog"),
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=time.time,
        rng=os.urandom,
        chunk_size=SMALL_CHUNK,
    )
    data = os.urandom(SMALL_CHUNK * 6 + 1)

    async def scenario() -> None:
        await store.put_bytes("meters", "obj", data, ErasureCoded(3, 2))
        stream = store.get("meters", "obj")
        first = await anext(stream)
        shutil.rmtree(tmp_path / "d0")
        (tmp_path / "d3").rename(tmp_path / "d3.gone")
        rest = b"".join([piece async for piece in stream])
        assert first + rest == data
        report = await scrub(store, ["meters"])
        assert (report.missing, report.unrepaired) == (2 * 7, 0)
        assert await store.get_bytes("meters", "obj") == data

    asyncio.run(scenario())
