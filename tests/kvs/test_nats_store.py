"""The ObjectStore on a local NATS cluster: round trips, a node killed mid-read, no plaintext."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.kvs.nats_nodes import NatsParts, NatsStorage
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.repair import scrub
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.store import ObjectStore
from meterseal.services.nats_cluster import LocalCluster
from tests.conftest import RUN_TAG
from tests.nats_cluster import running_cluster, stream_peers

MASTER = os.urandom(32)
_runs = itertools.count()
Scenario = Callable[[ObjectStore, NatsParts, NatsStorage], Awaitable[None]]


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-server cluster the tests that kill nothing share."""
    with running_cluster(tmp_path_factory.mktemp("nats-store"), 3) as started:
        yield started


def _on(cluster: LocalCluster, scenario: Scenario, *, chunk_size: int, keep: bool = False) -> None:
    names = [node.name for node in cluster.nodes]

    async def run() -> None:
        storage = await NatsStorage.connect(cluster.urls, f"{RUN_TAG}s{next(_runs)}")
        try:
            parts = await storage.parts(names, copies=(3,))
            store = ObjectStore(
                parts.nodes,
                parts.catalog,
                lambda bucket: derive_bucket_key(MASTER, bucket),
                clock=lambda: 1_780_000_000.0,
                rng=random.Random(7).randbytes,
                replica_sets=parts.replica_sets,
                chunk_size=chunk_size,
            )
            await scenario(store, parts, storage)
            if not keep:
                await storage.delete_streams()
        finally:
            await storage.close()

    asyncio.run(run())


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["rep:1", "rep:3", "ec:2+1"]),
    st.binary(max_size=5 * 1024 + 7),
    st.integers(0, 6000),
    st.integers(0, 6000),
)
def test_objects_and_ranges_round_trip_on_nats(
    shared_cluster: LocalCluster, policy: str, data: bytes, a: int, b: int
) -> None:
    start, end = sorted((min(a, len(data)), min(b, len(data))))

    async def scenario(store: ObjectStore, parts: NatsParts, storage: NatsStorage) -> None:
        info = await store.put_bytes("meters", "obj", data, parse_policy(policy))
        assert info.size == len(data)
        assert await store.get_bytes("meters", "obj") == data
        assert await store.get_bytes("meters", "obj", start, end) == data[start:end]
        assert [o.name for o in (await store.list("meters")).objects] == ["obj"]
        assert await store.delete("meters", "obj")
        assert not [i for n in parts.nodes async for i in n.blob_ids()]

    _on(shared_cluster, scenario, chunk_size=1024)


async def _read_killing(
    stream: AsyncIterator[bytes], kill: Callable[[], None], after: int = 1
) -> bytes:
    pieces: list[bytes] = []
    async for piece in stream:
        pieces.append(piece)
        if len(pieces) == after:
            kill()
    return b"".join(pieces)


KILLS = ["rep:3", "ec:3+2", "hybrid:2+2"]


@pytest.mark.parametrize("policy", KILLS)
def test_a_node_killed_mid_read_does_not_fail_the_read(tmp_path: Path, policy: str) -> None:
    chunk = 3 * 1024 * 1024  # fragments and copies above max_payload: split over messages
    data = os.urandom(2 * chunk + 12345)
    with running_cluster(tmp_path, 5) as cluster:

        async def scenario(store: ObjectStore, parts: NatsParts, storage: NatsStorage) -> None:
            await store.put_bytes("meters", "big", data, parse_policy(policy))
            manifest = await store.load(store.keys("meters"), "big")
            assert manifest is not None
            first = manifest.chunks[1]
            holder = (first.replicas or first.fragments)[0].node
            if holder in {rs.name for rs in parts.replica_sets}:
                # the replicated stream's leader
                holder = (await stream_peers(storage, parts.replica_sets[0].stream))[0]
            got = await _read_killing(store.get("meters", "big"), lambda: cluster.kill(holder))
            assert got == data
            assert (
                await store.get_bytes("meters", "big", chunk - 5, chunk + 5)
                == data[chunk - 5 : chunk + 5]
            )

        _on(cluster, scenario, chunk_size=chunk, keep=True)


def _scan(directory: Path, needles: list[bytes]) -> list[str]:
    """The files under `directory` holding any of `needles` (every byte of every file)."""
    found: list[str] = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            content = path.read_bytes()
            found.extend(f"{path}: {needle[:12]!r}" for needle in needles if needle in content)
    return found


def test_no_server_store_holds_plaintext_names_or_keys(tmp_path: Path) -> None:
    plain = os.urandom(300 * 1024)
    names = ["customer-0042/2026-11.cbor", "customer-0043/2026-11.cbor"]
    canary = b"canary, stored unsealed on purpose " + os.urandom(16)
    policies = ["rep:1", "rep:3", "ec:3+2", "hybrid:2+2"]
    with running_cluster(tmp_path, 5) as cluster:

        async def scenario(store: ObjectStore, parts: NatsParts, storage: NatsStorage) -> None:
            for i, policy in enumerate(policies):
                await store.put_bytes(
                    "originals", f"{names[i % 2]}.{i}", plain, parse_policy(policy)
                )
                assert await store.get_bytes("originals", f"{names[i % 2]}.{i}") == plain
            await parts.nodes[0].put("0123abcd", canary)  # the scan must find this one

        _on(cluster, scenario, chunk_size=64 * 1024, keep=True)
        cluster.stop()  # the servers flush what they hold
    windows = [plain[i : i + 24] for i in range(0, len(plain) - 24, len(plain) // 97)]
    needles = [*windows, *(n.encode() for n in names), b"originals", MASTER]
    assert _scan(tmp_path, needles) == []
    assert len(_scan(tmp_path, [canary])) >= 1


def test_a_server_back_with_an_empty_disk_is_refilled_by_a_scrub(tmp_path: Path) -> None:
    data = {f"obj-{i}": os.urandom(150 * 1024 + i) for i in range(3)}
    with running_cluster(tmp_path, 5) as cluster:

        async def scenario(store: ObjectStore, parts: NatsParts, storage: NatsStorage) -> None:
            for name, content in data.items():
                await store.put_bytes("meters", name, content, parse_policy("ec:3+2"))
            cluster.kill("n2")
            shutil.rmtree(cluster.node("n2").store)  # a new, empty disk
            await asyncio.to_thread(cluster.restart, "n2")
            n2 = parts.nodes[1]
            assert [i async for i in n2.blob_ids()] == []  # its stream is back, empty
            report = await scrub(store, ["meters"], repair=True)
            assert report.missing == 9  # 3 objects x 3 chunks, one fragment each on n2
            assert report.repaired == report.missing
            assert report.healthy
            assert len([i async for i in n2.blob_ids()]) == 9
            # Two servers go, as many as ec:3+2 tolerates: the catalog's leader among them,
            # and a catalog replica that never lost its disk stays.
            catalog = await stream_peers(storage, parts.catalog.stream)
            keep = [name for name in catalog if name != "n2"][-1]
            others = [n.name for n in cluster.nodes if n.name not in {"n2", keep}]
            doomed = sorted(others, key=lambda name: name != catalog[0])[:2]
            for name in doomed:
                cluster.kill(name)
            for name, content in data.items():
                assert await store.get_bytes("meters", name) == content

        _on(cluster, scenario, chunk_size=64 * 1024, keep=True)
