"""Storage nodes on a cluster of servers configured as meterseal ships them: TLS everywhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from meterseal.deployment import load_deployment, tls_identity_paths
from meterseal.kvs.nats_nodes import NatsStorage, node_tag
from meterseal.services import nats_server
from meterseal.services.nats_cluster import ClusterNode, LocalCluster
from tests.command_line import invoke
from tests.conftest import RUN_TAG
from tests.nats_cluster import require_nats_cluster
from tests.nats_server import started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment whose CA issued the gateway's client certificate."""
    directory = tmp_path_factory.mktemp("nats-tls") / "deployment"
    assert invoke(["keys", "init", str(directory)]).exit_code == 0
    assert invoke(["certs", "issue", "kvs-gateway", "-d", str(directory)]).exit_code == 0
    return directory


def test_node_streams_land_on_their_servers_of_a_tls_cluster(
    tmp_path: Path, deployment: Path
) -> None:
    written: list[str] = []

    def writer(node: ClusterNode, cluster: str, routes: Sequence[int]) -> Path:
        # What an operator runs for each storage node (the ports are this test's own).
        args = ["certs", "nats-server", str(node.directory), "--port=-1", "--name", node.name]
        args += ["--tag", node_tag(node.name), "--cluster", cluster]
        args += ["--cluster-port", str(node.cluster_port), "--monitor", "127.0.0.1:-1"]
        for port in routes:
            args += ["--route", f"127.0.0.1:{port}"]
        result = invoke([*args, "-d", str(deployment)])
        assert result.exit_code == 0, result.output
        written.append(result.output)
        return node.directory / nats_server.CONF

    cert, key = tls_identity_paths(deployment, "kvs-gateway")
    ca = deployment / "ca.cert.pem"
    with LocalCluster(tmp_path / "cluster", 3, binary=require_nats_cluster(), writer=writer) as c:
        assert all("client kvs-gateway tls://" in output for output in written)
        urls = [f"tls://127.0.0.1:{n.client_port}?ca={ca}&cert={cert}&key={key}" for n in c.nodes]

        async def scenario() -> None:
            storage = await NatsStorage.connect(urls, f"{RUN_TAG}tls")
            try:
                for server in c.nodes:
                    node = await storage.node(server.name)
                    await node.put("0123abcd", server.name.encode())
                    assert await node.get("0123abcd") == server.name.encode()
                    info = await storage.jetstream().stream_info(node.stream)
                    assert info.cluster is not None
                    assert info.cluster.leader == server.name
                catalog = await storage.catalog(3)
                await catalog.put("b1", "89abcdef", b"sealed")
                assert await catalog.get("b1", "89abcdef") == b"sealed"
            finally:
                await storage.close()

        asyncio.run(scenario())
        for server in c.nodes:
            conf = (server.directory / nats_server.CONF).read_text()
            assert "verify: true" in conf.split("cluster {")[1]  # routes prove themselves
            assert "Route connection created" in server.log()


def test_routes_need_a_cluster_and_a_clustered_server_a_name(
    tmp_path: Path, deployment: Path
) -> None:
    base = ["certs", "nats-server", str(tmp_path / "nats"), "-d", str(deployment)]
    no_cluster = invoke([*base, "--route", "127.0.0.1:6222"])
    assert no_cluster.exit_code == 2
    assert "--cluster" in no_cluster.output
    no_name = invoke([*base, "--cluster", "kvs"])
    assert no_name.exit_code == 2
    assert "name of its own" in no_name.output


def test_a_server_without_the_routes_password_cannot_join(tmp_path: Path, deployment: Path) -> None:
    keys = load_deployment(deployment)
    now = dt.datetime.now(dt.UTC)

    def plan(directory: Path, cluster: str, port: int, routes: Sequence[int], pw: str) -> Path:
        joined = nats_server.ClusterPlan(
            cluster, port, tuple(f"127.0.0.1:{p}" for p in routes), password=pw
        )
        server = nats_server.ServerPlan(
            directory,
            ("kvs-gateway",),
            port=-1,
            server_name=directory.name,
            cluster=joined,
            monitor="127.0.0.1:-1",
        )
        return nats_server.write_server(
            server, keys.ca_key, keys.ca_cert, ["127.0.0.1"], now=now, rng=os.urandom
        )

    def writer(node: ClusterNode, cluster: str, routes: Sequence[int]) -> Path:
        return plan(node.directory, cluster, node.cluster_port, routes, "")  # derived

    with LocalCluster(tmp_path / "c", 3, binary=require_nats_cluster(), writer=writer) as c:
        first = (c.nodes[0].directory / nats_server.CONF).read_text()
        password = nats_server.route_password(keys.ca_key, c.name)
        assert f"route:{password}@127.0.0.1:" in first
        assert password in (c.nodes[1].directory / nats_server.CONF).read_text()
        assert nats_server.route_password(keys.ca_key, "other") != password
        intruder = tmp_path / "intruder"
        ports = [node.cluster_port for node in c.nodes]
        conf = plan(intruder, c.name, _free_port(), ports, "not-the-password")
        with started(conf, intruder / "nats-server.log") as _port:
            deadline = time.monotonic() + 20
            while "Authorization Violation" not in (intruder / "nats-server.log").read_text():
                assert time.monotonic() < deadline, "the intruder's routes were not refused"
                time.sleep(0.1)
            assert c.wait_ready()  # the three still agree, without the intruder
