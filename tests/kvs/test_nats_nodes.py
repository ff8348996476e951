"""KVS storage nodes on a local NATS JetStream cluster: placement, splitting, losses."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.errors import KvsError
from meterseal.kvs.nats_nodes import HEADROOM, NatsStorage
from meterseal.kvs.nodes import ReplicaSet
from meterseal.services.nats_cluster import LocalCluster
from tests.conftest import RUN_TAG
from tests.kvs.test_nodes import _catalog_contract, _contract
from tests.nats_cluster import running_cluster, stream_peers

_runs = itertools.count()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A 3-server cluster of this test's own."""
    with running_cluster(tmp_path / "cluster", 3) as started:
        yield started


def _deployment() -> str:
    return f"{RUN_TAG}x{next(_runs)}"


def _on(cluster: LocalCluster, scenario: Callable[[NatsStorage], Awaitable[None]]) -> None:
    async def run() -> None:
        storage = await NatsStorage.connect(cluster.urls, _deployment(), timeout=2.0)
        try:
            await scenario(storage)
        finally:
            await storage.close()

    asyncio.run(run())


def test_nodes_replica_sets_and_the_catalog_keep_the_contract(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        for server in cluster.nodes:
            await _contract(await storage.node(server.name))
        replicas = await storage.replica_set(3)
        assert isinstance(replicas, ReplicaSet)
        assert replicas.copies == 3
        await _contract(replicas)
        await _catalog_contract(await storage.catalog())

    _on(cluster, scenario)


def test_each_node_stream_lives_on_its_own_server_only(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        js = storage.jetstream()
        for server in cluster.nodes:
            node = await storage.node(server.name)
            await node.put("00aa11bb", b"x" * 100)
            info = await js.stream_info(node.stream)
            assert info.cluster is not None
            assert info.cluster.leader == server.name
            assert not info.cluster.replicas  # a single replica: no followers anywhere
            holders = [s.name for s in cluster.nodes if any(s.store.rglob(node.stream))]
            assert holders == [server.name]

    _on(cluster, scenario)


def test_a_blob_larger_than_a_message_is_split_and_read_whole(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        node = await storage.node("n1")
        big = os.urandom(3 * storage.part_size + 5)
        await node.put("0123abcd", big)
        info = await storage.jetstream().stream_info(node.stream)
        assert info.state.messages == 4
        assert await node.get("0123abcd") == big
        await node.put("0123abcd", b"small")  # fewer parts: the old extra parts are ignored
        assert await node.get("0123abcd") == b"small"
        assert [i async for i in node.blob_ids()] == ["0123abcd"]
        await node.delete("0123abcd")
        assert (await storage.jetstream().stream_info(node.stream)).state.messages == 0
        assert await node.get("0123abcd") is None

    _on(cluster, scenario)


def test_a_killed_node_is_unavailable_while_the_others_serve(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        nodes = [await storage.node(server.name) for server in cluster.nodes]
        for node in nodes:
            await node.put("0123abcd", node.name.encode() * 1000)
        cluster.kill("n2")
        for node in nodes:
            if node.name == "n2":
                with pytest.raises(KvsError, match="n-n2"):
                    await node.get("0123abcd")
                with pytest.raises(KvsError, match="n-n2"):
                    await node.put("4567abcd", b"y")
                assert not await node.healthy()
            else:
                assert await node.get("0123abcd") == node.name.encode() * 1000
                assert await node.healthy()
        await asyncio.to_thread(cluster.restart, "n2")
        assert await nodes[1].get("0123abcd") == b"n2" * 1000  # durable across the crash
        assert await nodes[1].healthy()

    _on(cluster, scenario)


def test_a_replica_set_reads_with_all_but_one_server_lost(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        replicas = await storage.replica_set(3)
        catalog = await storage.catalog(3)
        blob = os.urandom(2 * storage.part_size)
        await replicas.put("0123abcd", blob)
        await catalog.put("b1", "89abcdef", b"sealed")
        leader = (await stream_peers(storage, replicas.stream))[0]
        cluster.kill(leader)  # the leader first, then another
        cluster.kill(next(s.name for s in cluster.nodes if s.running))
        assert await replicas.get("0123abcd") == blob
        assert await replicas.get("4567abcd") is None
        assert await catalog.get("b1", "89abcdef") == b"sealed"
        assert [item async for item in catalog.items("b1")] == [("89abcdef", b"sealed")]
        assert [i async for i in replicas.blob_ids()] == ["0123abcd"]
        assert not await replicas.healthy()
        storage.election_wait = 1.0  # no quorum: no leader will be elected however long
        with pytest.raises(KvsError):
            await replicas.put("4567abcd", b"no quorum")

    _on(cluster, scenario)


def test_a_write_just_after_the_catalog_lost_its_leader_waits_for_the_next(
    cluster: LocalCluster,
) -> None:
    async def scenario(storage: NatsStorage) -> None:
        catalog = await storage.catalog(3)
        await catalog.put("b1", "89abcdef", b"before")
        cluster.kill((await stream_peers(storage, catalog.stream))[0])
        await catalog.put("b1", "89abcdef", b"after")  # the two left elect a leader meanwhile
        await catalog.put("b1", "01234567", b"another")
        assert await catalog.get("b1", "89abcdef") == b"after"
        await catalog.delete("b1", "01234567")
        assert await catalog.keys("b1") == ["89abcdef"]

    _on(cluster, scenario)


def test_a_write_whose_ack_was_lost_does_not_undo_another_gateways_newer_write(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(storage: NatsStorage) -> None:
        catalog = await storage.catalog(3)
        other = await NatsStorage.connect(cluster.urls, storage.layout.deployment)
        try:
            theirs = await other.catalog(3)
            js = storage.jetstream()
            publish, lost = js.publish, [True]

            async def losing(*args: Any, **kwargs: Any) -> Any:
                ack = await publish(*args, **kwargs)
                if lost:  # stored, but its acknowledgement never came
                    lost.clear()
                    raise TimeoutError
                return ack

            async def meanwhile(seconds: float) -> None:  # the leader changes, they write
                cluster.kill((await stream_peers(other, theirs.stream))[0])
                await theirs.put("b1", "89abcdef", b"newer")

            monkeypatch.setattr(js, "publish", losing)
            storage.sleep = meanwhile
            await catalog.put("b1", "89abcdef", b"older")
            assert await theirs.get("b1", "89abcdef") == b"newer"
        finally:
            await other.close()

    _on(cluster, scenario)


def test_deployments_on_one_cluster_do_not_see_each_other(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        other = await NatsStorage.connect(cluster.urls, _deployment())
        try:
            mine, theirs = await storage.node("n1"), await other.node("n1")
            await mine.put("0123abcd", b"mine")
            assert await theirs.get("0123abcd") is None
            assert [i async for i in theirs.blob_ids()] == []
            assert await other.delete_streams() == [theirs.stream]
            assert await mine.get("0123abcd") == b"mine"
        finally:
            await other.close()

    _on(cluster, scenario)


def test_names_that_are_no_subject_token_are_refused(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        with pytest.raises(KvsError, match="node"):
            await storage.node("n1.>")
        with pytest.raises(KvsError, match="1 to 5"):
            await storage.replica_set(6)
        catalog = await storage.catalog()
        with pytest.raises(KvsError):
            await catalog.put("b.*", "0123abcd", b"")
        with pytest.raises(KvsError):
            await (await storage.node("n1")).put("0123abcd.>", b"")

    _on(cluster, scenario)


def test_a_node_whose_server_is_missing_cannot_be_made(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        with pytest.raises(KvsError, match="n-n9"):
            await storage.node("n9")  # no server carries the tag node:n9

    _on(cluster, scenario)


def test_a_killed_node_cannot_list_its_blobs_as_none(cluster: LocalCluster) -> None:
    async def scenario(storage: NatsStorage) -> None:
        node = await storage.node("n3")
        await node.put("0123abcd", b"kept")
        cluster.kill("n3")
        for _ in range(3):  # the meta leader may answer for the stream after a while
            with pytest.raises(KvsError, match="n-n3"):
                _ = [i async for i in node.blob_ids()]
        with pytest.raises(KvsError, match="n-n3"):
            await node.delete("0123abcd")

    _on(cluster, scenario)


SMALL_PAYLOAD = 4096  # a server's max_payload small enough to split blobs of a few KiB
PART = SMALL_PAYLOAD - HEADROOM


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-server cluster with max_payload 4 KiB, shared by the module's property test."""
    with running_cluster(tmp_path_factory.mktemp("small"), 3, max_payload=SMALL_PAYLOAD) as started:
        yield started


_SIZES = st.one_of(
    st.integers(0, 5 * PART + 10),
    st.sampled_from([k * PART + d for k in range(1, 5) for d in (-1, 0, 1)]),
)


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_SIZES, st.integers(0, 2**32)), min_size=1, max_size=3))
def test_blobs_round_trip_across_part_boundaries(
    small_cluster: LocalCluster, blobs: list[tuple[int, int]]
) -> None:
    async def scenario(storage: NatsStorage) -> None:
        assert storage.part_size == PART
        node, replicas = await storage.node("n2"), await storage.replica_set(3)
        catalog = await storage.catalog()
        for size, seed in blobs:  # each replaces the one before, whatever its parts
            blob = random.Random(seed).randbytes(size)
            for target in (node, replicas):
                await target.put("0123abcd", blob)
                assert await target.get("0123abcd") == blob
            await catalog.put("b1", "0123abcd", blob)
            assert [item async for item in catalog.items("b1")] == [("0123abcd", blob)]
        await storage.delete_streams()

    _on(small_cluster, scenario)
