"""The runtime's HTTP app factory and server: IPv4 and IPv6, as a stage and in a thread."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI

from meterseal.runtime.http import HttpAppService, HttpServer, ThreadedServer, service_app
from meterseal.runtime.lifecycle import State, serve_stage


def _app() -> FastAPI:
    counts: Counter[str] = Counter()
    return service_app("test", "A test service.", counts, lambda: {"seen": dict(counts)})


def _has_ipv6() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("listen", "family"),
    [
        ("127.0.0.1:0", socket.AF_INET),
        ("localhost:0", None),
        pytest.param(
            "[::1]:0",
            socket.AF_INET6,
            marks=pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback"),
        ),
    ],
)
def test_an_app_stage_serves_on_ipv4_ipv6_and_host_names(listen: str, family: int | None) -> None:
    lines: list[str] = []

    async def scenario() -> None:
        stage, stop = HttpAppService("probe", _app(), listen, 0), asyncio.Event()
        task = asyncio.create_task(serve_stage(stage, announce=lines.append, stop=stop))
        while not any(line.startswith("ready ") for line in lines):
            await asyncio.sleep(0.01)
        url = next(line.split()[2] for line in lines if line.startswith("listening probe"))
        sock = stage.server._server.servers[0].sockets[0]  # type: ignore[union-attr]
        if family is not None:
            assert sock.family == family
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/v1/counters")).json() == {"seen": {}}
        stop.set()
        assert (await task).state is State.STOPPED

    asyncio.run(scenario())
    if listen.startswith("["):
        assert any(line.startswith("listening probe http://[::1]:") for line in lines)


def test_a_threaded_server_serves_until_its_block_ends() -> None:
    with ThreadedServer(_app()) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


def test_a_port_in_use_is_an_os_error_not_an_exit() -> None:
    async def scenario() -> None:
        first = HttpServer(_app())
        port = await first.start("127.0.0.1", 0)
        try:
            with pytest.raises(OSError, match="in use"):
                await HttpServer(_app()).start("127.0.0.1", port)
        finally:
            await first.stop()

    asyncio.run(scenario())
