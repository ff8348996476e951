"""A local NATS JetStream cluster: 3 to 9 ``nats-server`` processes on 127.0.0.1.

Each server is one KVS storage node: its own store directory, JetStream, the placement tag
``node:<name>`` (`node_tag`) and routes to every other server. Client and monitoring ports
are chosen by the servers (``-1``) and read from their logs; cluster ports cannot be (each
server's routes name the others' in advance), so they are ports the kernel just handed out,
and the whole cluster starts again on new ones when someone took one meanwhile.
`LocalCluster.start` returns once every server sees the same JetStream meta leader;
`kill` (SIGKILL, as a crash) and `restart` take one server down and bring it back on its
ports and store. The servers listen on 127.0.0.1 only and have no authentication: this is
the cluster of the tests and of `meterseal bench kvs`, not a deployment's.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterseal.errors import ConfigurationError

CONF = "nats-server.conf"
LOG = "nats-server.log"
STORE = "store"
MIN_NODES, MAX_NODES = 3, 9  # tests use 3-5; ec:6+2 needs 8 nodes, hybrid:6+2 nine
_ATTEMPTS = 8
_CLIENT = re.compile(r"Listening for client connections on [^\s]+:(\d+)")
_MONITOR = re.compile(r"Starting http monitor on [^\s]+:(\d+)")
_ROUTES = "Listening for route connections"
_IN_USE = "address already in use"


def node_tag(name: str) -> str:
    """The placement tag of the server that is storage node `name`."""
    return f"node:{name}"


def nats_server_binary(explicit: str | None = None) -> str | None:
    """The nats-server executable (`explicit`, else on PATH, else /usr/sbin); None if none."""
    for candidate in (explicit, shutil.which("nats-server"), "/usr/sbin/nats-server"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@dataclass
class ClusterNode:
    """One server of the cluster: its name, directory, ports and process."""

    name: str
    directory: Path
    cluster_port: int
    client_port: int = 0
    monitor_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The server's client URL (``nats://127.0.0.1:PORT``)."""
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def store(self) -> Path:
        """The server's JetStream store directory."""
        return self.directory / STORE

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What the server logged so far (every start appends)."""
        path = self.directory / LOG
        return path.read_text(errors="replace") if path.exists() else ""


def cluster_conf(
    node: ClusterNode, cluster: str, routes: Sequence[int], max_payload: int | None = None
) -> str:
    """``nats-server.conf`` of `node` in cluster `cluster`, routing to the ports `routes`."""

    def q(value: object) -> str:
        return json.dumps(str(value))

    route_urls = ", ".join(q(f"nats-route://127.0.0.1:{port}") for port in routes)
    return "\n".join(
        [
            "# A local KVS storage node (written by meterseal.services.nats_cluster).",
            f"server_name: {q(node.name)}",
            'host: "127.0.0.1"',
            "port: -1",
            'http: "127.0.0.1:-1"',
            f"server_tags: [{q(node_tag(node.name))}]",
            *([f"max_payload: {max_payload}"] if max_payload else []),
            f"log_file: {q((node.directory / LOG).resolve())}",
            "jetstream {",
            f"  store_dir: {q(node.store.resolve())}",
            "  max_memory_store: 268435456",
            "}",
            "cluster {",
            f"  name: {q(cluster)}",
            '  host: "127.0.0.1"',
            f"  port: {node.cluster_port}",
            f"  routes: [{route_urls}]",
            "}",
            "",
        ]
    )


# Writes a server's configuration into its directory: (server, cluster name, the other
# servers' route ports) -> the file. It must log to DIRECTORY/nats-server.log and open an
# HTTP monitor (the cluster reads both); the default is `cluster_conf`.
ConfWriter = Callable[["ClusterNode", str, Sequence[int]], Path]


class LocalCluster:
    """3 to 9 nats-server processes forming one JetStream cluster under `directory`."""

    def __init__(
        self,
        directory: Path,
        size: int = 3,
        *,
        binary: str | None = None,
        prefix: str = "n",
        max_payload: int | None = None,
        writer: ConfWriter | None = None,
    ) -> None:
        if not MIN_NODES <= size <= MAX_NODES:
            raise ConfigurationError(f"a local cluster has {MIN_NODES} to {MAX_NODES} servers")
        found = nats_server_binary(binary)
        if found is None:
            raise ConfigurationError("nats-server binary not found (set MS_NATS_SERVER)")
        self.binary = found
        self.max_payload = max_payload  # None: the server's default (1 MiB)
        self.writer = writer or self._plain
        self.directory = directory
        self.name = f"ms-kvs-{secrets.token_hex(4)}"
        self.nodes = [
            ClusterNode(f"{prefix}{i + 1}", directory / f"{prefix}{i + 1}", 0) for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        """Client URLs of the servers that run."""
        return [node.url for node in self.nodes if node.running]

    def node(self, name: str) -> ClusterNode:
        """The server named `name`."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start every server (new cluster ports on a collision); wait for a meta leader."""
        for _ in range(_ATTEMPTS):
            ports = _free_ports(len(self.nodes))
            for node, port in zip(self.nodes, ports, strict=True):
                node.cluster_port = port
            started = [self._launch(node) for node in self.nodes]
            if all(started):
                self.wait_ready(timeout)
                return self
            in_use = any(_IN_USE in node.log() for node in self.nodes)
            self.stop()
            if not in_use:
                raise ConfigurationError(f"nats-server did not start: {self._logs()[-2000:]}")
        raise ConfigurationError(f"no free cluster ports for nats-server in {_ATTEMPTS} attempts")

    def kill(self, name: str) -> None:
        """Kill server `name` outright (SIGKILL, as a crash); its store stays."""
        node = self.node(name)
        if node.process is not None:
            node.process.kill()
            node.process.wait()
            node.process = None

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Start server `name` again on its cluster port and store; wait until it has a leader."""
        node = self.node(name)
        if node.running:
            raise ConfigurationError(f"server {name} is running")
        if not self._launch(node):
            raise ConfigurationError(
                f"nats-server {name} did not start again: {node.log()[-2000:]}"
            )
        self.wait_ready(timeout)

    def stop(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL after 10 s)."""
        for node in self.nodes:
            if node.process is not None:
                _stop(node.process)
                node.process = None

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait until every running server follows one meta leader that has them all; its name."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            running = [node for node in self.nodes if node.running]
            metas = {node.name: _meta(node) for node in running}
            leaders = {str(meta.get("leader") or "") for meta in metas.values()}
            leader = leaders.pop() if len(leaders) == 1 else ""
            last = metas.get(leader) or last
            if leader in metas:
                replicas = metas[leader].get("replicas") or []
                current = {
                    r.get("name") for r in replicas if isinstance(r, dict) and r.get("current")
                }
                if current >= set(metas) - {leader}:
                    return leader
            time.sleep(0.1)
        raise ConfigurationError(f"no JetStream meta leader within {timeout:.0f} s ({last})")

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _launch(self, node: ClusterNode) -> bool:
        node.directory.mkdir(parents=True, exist_ok=True)
        routes = [other.cluster_port for other in self.nodes if other is not node]
        conf = self.writer(node, self.name, routes)
        before = len(node.log())
        with (node.directory / LOG).open("ab") as log:  # errors before the log file opens
            node.process = subprocess.Popen(  # noqa: S603 - the binary found, our own config
                [self.binary, "-c", str(conf)],
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and node.process.poll() is None:
            text = node.log()[before:]
            client, monitor = _CLIENT.search(text), _MONITOR.search(text)
            if client and monitor and _ROUTES in text:
                node.client_port, node.monitor_port = int(client[1]), int(monitor[1])
                return True
            time.sleep(0.02)
        return False

    def _plain(self, node: ClusterNode, cluster: str, routes: Sequence[int]) -> Path:
        conf = node.directory / CONF
        conf.write_text(cluster_conf(node, cluster, routes, self.max_payload))
        return conf

    def _logs(self) -> str:
        return "\n".join(f"--- {node.name}\n{node.log()}" for node in self.nodes)


@contextlib.contextmanager
def local_cluster(
    directory: Path, size: int = 3, *, binary: str | None = None
) -> Iterator[LocalCluster]:
    """A started `LocalCluster` of `size` servers under `directory`; stopped after."""
    cluster = LocalCluster(directory, size, binary=binary)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _meta(node: ClusterNode) -> dict[str, Any]:
    try:
        url = f"http://127.0.0.1:{node.monitor_port}/jsz"
        with urllib.request.urlopen(url, timeout=2) as answer:
            meta = json.load(answer).get("meta_cluster") or {}
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent() -> None:
    # A run killed outright must not leave its servers behind (Linux: PR_SET_PDEATHSIG).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
