"""The gateway over storage nodes on a NATS JetStream cluster of the test's own (5 servers)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from meterseal.kvs.gateway_keys import KeyTable, Right, Scope
from meterseal.kvs.nats_nodes import NatsStorage
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.service import (
    GatewayOptions,
    StoreLayout,
    gateway_state,
    open_store,
)
from meterseal.services.nats_cluster import LocalCluster
from tests.kvs.service_fixtures import MASTER, Running
from tests.nats_cluster import running_cluster

OBJECT = random.Random(8).randbytes(9 * 1024 * 1024 + 3)  # three 4 MiB chunks


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Five nats-server processes n1..n5, tagged node:nI."""
    with running_cluster(tmp_path / "nats", 5) as started:
        yield started


def test_the_gateway_stores_on_nats_nodes_and_reads_with_two_servers_lost(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    namespace = f"gw{os.urandom(4).hex()}"
    layout = StoreLayout(tmp_path, 5, ",".join(cluster.urls), namespace)
    policy = parse_policy("ec:3+2")

    async def add_key() -> str:
        opened = await open_store(layout, MASTER, policy, os.urandom)
        try:
            state = gateway_state(opened.store, layout, policy)
            table, new = KeyTable().add(
                Scope("meters", "", frozenset((Right.READ, Right.WRITE))), "t", 1.0, os.urandom
            )
            await state.save_keys(table)
            return new.secret
        finally:
            await opened.close()

    key = asyncio.run(add_key())
    options = GatewayOptions(tmp_path, "http://unused", layout, "ec:3+2", "127.0.0.1:0")
    running = Running(options)
    with (
        running as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client,
    ):
        put = client.put("/v1/kvs/meters/month", content=OBJECT)
        assert put.status_code == 201, put.text
        assert put.json()["policy"] == "ec:3+2"
        assert client.get("/v1/kvs/meters/month").content == OBJECT
        cluster.kill("n2")
        cluster.kill("n5")
        assert client.get("/v1/kvs/meters/month").content == OBJECT
        assert (
            client.get("/v1/kvs/meters/month", headers={"Range": "bytes=5000000-5000099"}).content
            == (OBJECT[5_000_000:5_000_100])
        )
        # a write needs all five nodes of ec:3+2 now: refused clearly, nothing half-written
        refused = client.put("/v1/kvs/meters/later", content=b"x" * 100)
        assert refused.status_code == 503
        assert client.head("/v1/kvs/meters/later").status_code == 404
        # and /readyz says why, once the nodes were probed again (every 5 s)
        deadline = time.monotonic() + 30
        while (ready := httpx.get(f"{running.admin()}/readyz")).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert ready.status_code == 503
        assert "3 of 5 storage nodes are healthy" in ready.json()["reason"]


def test_replicated_objects_live_on_a_stream_jetstream_replicates(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    namespace = f"gw{os.urandom(4).hex()}"
    layout = StoreLayout(tmp_path, 5, ",".join(cluster.urls), namespace)
    policy = parse_policy("rep:3")

    async def scenario() -> tuple[int, int, list[int], bytes]:
        opened = await open_store(layout, MASTER, policy, os.urandom)
        storage = await NatsStorage.connect(list(cluster.urls), namespace)
        try:
            await opened.store.put_bytes("meters", "month", OBJECT, policy)
            js = storage.jetstream()
            info = await js.stream_info(f"KVS_{namespace}_r-rep3")
            nodes = [await js.stream_info(f"KVS_{namespace}_n-n{i}") for i in range(1, 6)]
            await storage.close()
            cluster.kill("n1")
            cluster.kill("n2")
            read = await opened.store.get_bytes("meters", "month")
            # a gateway (re)started while two servers are down opens and reads too
            reopened = await open_store(layout, MASTER, policy, os.urandom)
            try:
                assert await reopened.store.get_bytes("meters", "month") == OBJECT
            finally:
                await reopened.close()
            return (
                info.config.num_replicas or 0,
                info.state.messages,
                [n.state.messages for n in nodes],
                read,
            )
        finally:
            await opened.close()

    replicas, messages, on_nodes, read = asyncio.run(scenario())
    assert replicas == 3
    assert messages > 0
    assert on_nodes == [0, 0, 0, 0, 0]  # no copy went to a single-replica node stream
    assert read == OBJECT  # two of five servers down: the stream still has a copy to read
