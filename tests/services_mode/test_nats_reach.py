"""NATS gone, without JetStream, or lost: one line (password hidden), and /readyz follows."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meterseal.errors import MetersealError
from meterseal.services.bus import BusError
from meterseal.services.nats_bus import NatsBus, connect_nats
from meterseal.services.workers import BusWorker

SECRET = "n4ts-pw"
NATS_SERVER = shutil.which("nats-server")
needs_nats_server = pytest.mark.skipif(NATS_SERVER is None, reason="no nats-server binary")


class NatsServer(subprocess.Popen[str]):
    """A nats-server process and the port it listens on."""

    port = 0


@contextmanager
def nats_server(port: int, *args: str) -> Iterator[NatsServer]:
    """A private nats-server on 127.0.0.1:`port` (-1: any free one), stopped on exit."""
    assert NATS_SERVER is not None
    server = NatsServer(
        [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:  # nats-server logs to stderr; wait until it listens
            if "Listening for client connections on" in line:
                server.port = int(line.rsplit(":", 1)[1])
            if "Server is ready" in line:
                break
        else:
            pytest.fail("nats-server did not start")
        yield server
    finally:
        server.terminate()
        server.wait(30)


def test_no_server_is_one_line_without_the_password() -> None:
    with socket.socket() as holder:  # bound, never listening: connections are refused
        holder.bind(("127.0.0.1", 0))
        url = f"nats://user:{SECRET}@127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(BusError) as raised:  # NatsBus.connect retries 5 times first
            asyncio.run(connect_nats(url, max_reconnect_attempts=1))
    text = raised.value.diagnostics()
    assert text.startswith("cannot reach NATS at nats://user:***@127.0.0.1:")
    assert "\n" not in text
    assert SECRET not in text
    assert "nats-server running" in text


@needs_nats_server
def test_a_server_without_jetstream_is_named() -> None:
    with nats_server(-1) as server, pytest.raises(MetersealError) as raised:
        asyncio.run(NatsBus.connect(f"nats://127.0.0.1:{server.port}", prefix="nojs"))
    assert raised.value.diagnostics() == (
        f"NATS at nats://127.0.0.1:{server.port} has no JetStream (start nats-server with -js)"
    )


@needs_nats_server
def test_readiness_follows_the_connection(tmp_path: Path) -> None:
    jetstream = ["-js", "-sd", str(tmp_path / "js")]

    async def scenario() -> None:
        with nats_server(-1, *jetstream) as server:
            port = server.port
            bus = await NatsBus.connect(f"nats://127.0.0.1:{port}", prefix="ready")
            worker = BusWorker(bus)
            worker.readiness.every = 0.0
            assert await worker.readiness.reason() is None
        # The server is gone: the client notices and reconnects in the background.
        while (reason := await worker.readiness.reason()) is None:
            await asyncio.sleep(0.05)
        assert reason == "the NATS connection is lost, reconnecting"
        with nats_server(port, *jetstream):
            while await worker.readiness.reason() is not None:
                await asyncio.sleep(0.05)
            await bus.close()

    asyncio.run(scenario())
