"""The local NATS cluster: tags, own stores, a taken port, a crash and a restart."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from meterseal.errors import ConfigurationError
from meterseal.services import nats_cluster
from meterseal.services.nats_cluster import LocalCluster, cluster_conf
from tests.nats_cluster import require_nats_cluster, running_cluster


def test_five_servers_tag_themselves_and_keep_their_own_stores(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 5) as cluster:
        assert [node.name for node in cluster.nodes] == ["n1", "n2", "n3", "n4", "n5"]
        assert len(set(cluster.urls)) == 5
        leader = cluster.wait_ready()
        assert leader in {node.name for node in cluster.nodes}
        for node in cluster.nodes:
            conf = (node.directory / nats_cluster.CONF).read_text()
            assert f'server_tags: ["node:{node.name}"]' in conf
            assert (node.store / "jetstream").is_dir()
            assert f"Name:     {node.name}" in node.log()
            others = {other.cluster_port for other in cluster.nodes if other is not node}
            assert (
                set(map(int, re.findall(r"127\.0\.0\.1:(\d+)\"", conf.split("routes")[1])))
                == others
            )
    assert not any(node.running for node in cluster.nodes)


def test_a_crashed_server_comes_back_on_its_ports_and_store(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        leader = cluster.wait_ready()
        port = cluster.node(leader).cluster_port
        cluster.kill(leader)
        assert not cluster.node(leader).running
        assert len(cluster.urls) == 2
        new_leader = cluster.wait_ready()  # the two left elect one of themselves
        assert new_leader != leader
        with pytest.raises(ConfigurationError, match="running"):
            cluster.restart(new_leader)
        cluster.restart(leader)
        assert cluster.node(leader).running
        assert cluster.node(leader).cluster_port == port
        assert len(cluster.urls) == 3


def test_a_cluster_port_taken_meanwhile_starts_the_cluster_on_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_nats_cluster()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = nats_cluster._free_ports
    handed: list[list[int]] = []

    def ports(count: int) -> list[int]:
        handed.append([taken.getsockname()[1], *real(count - 1)] if not handed else real(count))
        return handed[-1]

    monkeypatch.setattr(nats_cluster, "_free_ports", ports)
    try:
        with running_cluster(tmp_path) as cluster:
            assert len(handed) == 2
            assert cluster.nodes[0].cluster_port == handed[1][0] != taken.getsockname()[1]
            assert "address already in use" in cluster.nodes[0].log()
    finally:
        taken.close()


def test_a_cluster_has_three_to_nine_servers(tmp_path: Path) -> None:
    binary = require_nats_cluster()
    for size in (2, 10):
        with pytest.raises(ConfigurationError, match="3 to 9"):
            LocalCluster(tmp_path, size, binary=binary)


def test_the_configuration_quotes_paths_and_lists_the_routes(tmp_path: Path) -> None:
    node = nats_cluster.ClusterNode("n1", tmp_path / 'a "quoted" dir', 4300)
    conf = cluster_conf(node, "c1", [4301, 4302])
    assert '"nats-route://127.0.0.1:4301", "nats-route://127.0.0.1:4302"' in conf
    assert 'a \\"quoted\\" dir' in conf
    assert "port: 4300" in conf
