"""The services-mode bus over mutual TLS, on a nats-server started with the shipped config.

The server (tests/nats_server.py) speaks TLS only, requires a client certificate of the
deployment CA and maps its subject to a listed user. Bus traffic flows for the listed
services (their keys encrypted at rest, read with MS_PASSPHRASE); a client without a
certificate, with one of another CA, with one of the right CA but not a listed service, or
speaking plain TCP, is refused, and so is a server the client's CA did not issue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.transport import TcpTransport

from meterseal.acquisition.tcp import TcpLink
from meterseal.deployment import init_deployment, issue_tls_identity, tls_identity_paths
from meterseal.errors import KeyFileError
from meterseal.meter.simulator import run_fleet
from meterseal.services.bus import PACKETS, BusError
from meterseal.services.nats_bus import NatsBus
from tests.command_line import invoke
from tests.nats_server import NatsServer, running_nats, started
from tests.services_mode.conftest import make_fleet, wait_stored
from tests.services_mode.test_kill9 import Deployment as Served

pytestmark = pytest.mark.services
PASSPHRASE = "nats tls test passphrase"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server of this module's own; three services may connect."""
    now = dt.datetime.now(dt.UTC)
    deployment = init_deployment(tmp_path_factory.mktemp("deployment"), now=now)
    with running_nats(
        deployment,
        ["receiver", "open-verify", "services"],
        now=now,
        passphrase=PASSPHRASE.encode(),
    ) as running:
        yield running


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """The services' keys are encrypted at rest: MS_PASSPHRASE opens them."""
    monkeypatch.setenv("MS_PASSPHRASE", PASSPHRASE)


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 60))


async def refused(url: str) -> None:
    """Connecting to `url` fails with a BusError."""
    with pytest.raises(BusError):
        await NatsBus.connect(url, prefix="refused")


def test_bus_traffic_flows_over_mutual_tls(
    server: NatsServer, passphrase: None, unique_name: str
) -> None:
    async def scenario() -> None:
        receiver = await NatsBus.connect(server.url("receiver"), prefix=unique_name)
        worker = await NatsBus.connect(server.url("open-verify"), prefix=unique_name)
        try:
            await receiver.publish(PACKETS, b"sealed packet", msg_id="p1")
            consumer = await worker.consumer(PACKETS, "open-verify")
            [delivery] = await consumer.fetch(10, 5.0)
            assert delivery.data == b"sealed packet"
            await delivery.ack()
            assert await consumer.pending() == 0
            transport = receiver.client._transport
            assert isinstance(transport, TcpTransport)
            assert transport._io_writer is not None
            tls = transport._io_writer.get_extra_info("ssl_object")
            assert tls is not None
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        finally:
            await worker.delete_streams()
            await worker.close()
            await receiver.close()

    run(scenario())


def test_an_encrypted_client_key_needs_the_passphrase(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MS_PASSPHRASE", raising=False)
    with pytest.raises(KeyFileError):
        asyncio.run(NatsBus.connect(server.url("receiver")))


def test_a_client_without_a_certificate_is_refused(server: NatsServer) -> None:
    asyncio.run(refused(server.url()))


def test_a_certificate_of_another_ca_is_refused(server: NatsServer, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    other = init_deployment(tmp_path / "other", now=now)
    issue_tls_identity(other, "receiver", [], passphrase=None, now=now)
    cert, key = tls_identity_paths(other.directory, "receiver")
    asyncio.run(refused(f"{server.url()}&cert={cert}&key={key}"))


def test_a_deployment_certificate_of_no_listed_service_is_refused(
    server: NatsServer, passphrase: None
) -> None:
    now = dt.datetime.now(dt.UTC)
    issue_tls_identity(server.deployment, "intruder", [], passphrase=PASSPHRASE.encode(), now=now)
    asyncio.run(refused(server.url("intruder")))


def test_a_server_of_another_ca_is_refused(
    server: NatsServer, passphrase: None, tmp_path: Path
) -> None:
    other = init_deployment(tmp_path / "other", now=dt.datetime.now(dt.UTC))
    url = server.url("receiver", ca=other.directory / "ca.cert.pem")
    asyncio.run(refused(url))


def test_plain_tcp_is_refused(server: NatsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain:
        info = plain.makefile("rb").readline()
        assert b'"tls_required":true' in info
        plain.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        answer = b""
        while chunk := plain.recv(4096):
            answer += chunk
    assert b"PONG" not in answer


def test_certs_nats_server_writes_a_config_the_services_connect_to(
    tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"MS_PASSPHRASE": PASSPHRASE}
    deployment = tmp_path / "deployment"
    assert invoke(["keys", "init", str(deployment)], env=env).exit_code == 0
    issued = invoke(["certs", "issue", "billing", "-d", str(deployment)], env=env)
    assert issued.exit_code == 0, issued.output
    server_dir = tmp_path / "nats"
    args = ["certs", "nats-server", str(server_dir), "--port=-1", "-d", str(deployment)]
    result = invoke(args, env=env)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(" ", 1) for line in result.output.splitlines() if " " in line)
    conf = server_dir / "nats-server.conf"
    assert lines["server"] == f"nats-server -c {conf.resolve()}"
    assert "verify_and_map: true" in conf.read_text()
    assert conf.stat().st_mode & 0o777 == 0o600
    name, url = lines["client"].split(" ", 1)
    assert name == "billing"

    async def scenario(port: int) -> None:
        bus = await NatsBus.connect(url.replace(":-1?", f":{port}?"), prefix=unique_name)
        try:
            await bus.publish(PACKETS, b"sealed", msg_id="m1")
            [delivery] = await (await bus.consumer(PACKETS, "billing")).fetch(1, 5.0)
            await delivery.ack()
        finally:
            await bus.delete_streams()
            await bus.close()

    monkeypatch.setenv("MS_PASSPHRASE", PASSPHRASE)
    with started(conf, tmp_path / "nats.log") as port:
        run(scenario(port))


def test_services_mode_stores_every_reading_over_mutual_tls(
    server: NatsServer, passphrase: None, unique_name: str, tmp_path: Path
) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", 4, 8)
    # The services' certificate and key are the server fixture's deployment's; the fleet's
    # deployment (its own CA) only signs the meters, whose packets travel over TCP.
    command = [sys.executable, "-m", "meterseal", "serve", "--mode", "services"]
    command += ["-d", str(fleet.directory), "--store", fleet.store_url]
    command += ["--nats", server.url("services"), "--prefix", unique_name, "--tcp", "127.0.0.1:0"]
    served = Served(command)
    try:
        assert served.ready.wait(90), "\n".join(served.lines)
        host, port = served.tcp.rsplit(":", 1)
        report = asyncio.run(run_fleet(fleet.wire, TcpLink(host, int(port)), concurrency=4))
        assert report.unacknowledged == 0
        assert wait_stored(fleet) == fleet.packets
    finally:
        code = served.stop()
    assert code == 0, "\n".join(served.lines[-30:])
    assert not any(PASSPHRASE in line for line in served.lines)
