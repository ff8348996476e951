"""Nodes and catalogs: the Protocols' contracts over memory and local directories."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from meterseal.errors import KvsError
from meterseal.kvs.nodes import (
    BlobNode,
    Catalog,
    LocalDirCatalog,
    LocalDirNode,
    MemoryCatalog,
    MemoryNode,
    MirrorSet,
    ReplicaSet,
)


async def _ids(node: BlobNode) -> set[str]:
    return {blob_id async for blob_id in node.blob_ids()}


async def _contract(node: BlobNode) -> None:
    assert isinstance(node, BlobNode)
    assert await node.healthy()
    assert await node.get("00aa11bb") is None
    await node.put("00aa11bb", b"one")
    await node.put("00aa11bb", b"two")  # replaces
    await node.put("ffee0011", b"")
    assert await node.get("00aa11bb") == b"two"
    assert await node.get("ffee0011") == b""
    assert await _ids(node) == {"00aa11bb", "ffee0011"}
    await node.delete("00aa11bb")
    await node.delete("00aa11bb")  # absent is fine
    assert await _ids(node) == {"ffee0011"}
    for bad in ["../etc/passwd", "ABCDEF01", "abc", "g" * 10]:
        with pytest.raises(KvsError):
            await node.put(bad, b"x")


def test_memory_node_keeps_the_contract() -> None:
    asyncio.run(_contract(MemoryNode("m1")))


def test_local_dir_node_keeps_the_contract(tmp_path: Path) -> None:
    node = LocalDirNode("d1", tmp_path / "d1")
    asyncio.run(_contract(node))
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["d1/ff/ffee0011"]  # no temporary files left


def test_a_mirror_set_keeps_the_contract_and_its_copies(tmp_path: Path) -> None:
    members = [LocalDirNode(f"r{i}", tmp_path / f"r{i}") for i in range(3)]
    mirror = MirrorSet("rs3", members)
    assert isinstance(mirror, ReplicaSet)
    assert mirror.copies == 3
    asyncio.run(_contract(mirror))
    assert all((tmp_path / f"r{i}" / "ff" / "ffee0011").exists() for i in range(3))


def test_a_mirror_set_reads_past_a_dead_member_and_writes_all_or_nothing() -> None:
    members = [MemoryNode(f"m{i}") for i in range(3)]
    mirror = MirrorSet("rs", members)

    async def scenario() -> None:
        await mirror.put("0123abcd", b"data")
        members[0].up = False
        assert await mirror.get("0123abcd") == b"data"
        assert not await mirror.healthy()
        with pytest.raises(KvsError, match="1 member"):
            await mirror.put("4567abcd", b"more")
        assert "4567abcd" not in members[1].blobs | members[2].blobs

    asyncio.run(scenario())


def test_a_down_memory_node_fails_every_call() -> None:
    node = MemoryNode("m")
    node.up = False

    async def scenario() -> None:
        assert not await node.healthy()
        with pytest.raises(KvsError, match="down"):
            await node.get("0123abcd")

    asyncio.run(scenario())


def test_an_unwritable_dir_is_not_healthy(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    assert not asyncio.run(LocalDirNode("x", tmp_path / "file" / "sub").healthy())
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert not asyncio.run(LocalDirNode("y", locked).healthy())


async def _catalog_contract(catalog: Catalog) -> None:
    assert isinstance(catalog, Catalog)
    assert await catalog.get("b1", "0123abcd") is None
    await catalog.put("b1", "0123abcd", b"m1")
    await catalog.put("b1", "0123abcd", b"m2")
    await catalog.put("b1", "89abcdef", b"m3")
    await catalog.put("b2", "0123abcd", b"other")
    assert await catalog.get("b1", "0123abcd") == b"m2"
    assert {k: v async for k, v in catalog.items("b1")} == {"0123abcd": b"m2", "89abcdef": b"m3"}
    await catalog.delete("b1", "0123abcd")
    await catalog.delete("b1", "0123abcd")
    assert [k async for k, _ in catalog.items("b1")] == ["89abcdef"]
    assert await catalog.keys("b1") == ["89abcdef"]
    assert await catalog.keys("nobody") == []
    assert await catalog.bucket_ids() == ["b1", "b2"]
    await catalog.delete("b2", "0123abcd")
    assert await catalog.bucket_ids() == ["b1"]  # a bucket without entries is not one
    assert [k async for k, _ in catalog.items("nobody")] == []
    with pytest.raises(KvsError):
        await catalog.put("../x", "0123abcd", b"")


def test_catalogs_keep_the_contract(tmp_path: Path) -> None:
    asyncio.run(_catalog_contract(MemoryCatalog()))
    asyncio.run(_catalog_contract(LocalDirCatalog(tmp_path / "catalog")))
