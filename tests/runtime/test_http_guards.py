"""The runtime server's guards hold under both parsers: httptools (llhttp) and h11."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from contextlib import AbstractAsyncContextManager

import httpx
import pytest

from meterseal.runtime.http import HttpServer, ServerLimits, ThreadedServer, protocol_base
from tests.runtime.raw_http import digest_app, exchange, put_head, served

PARSERS = [
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            protocol_base() is protocol_base("h11"), reason="httptools not installed"
        ),
    ),
    "h11",
]


def _served(
    parser: str, limits: ServerLimits
) -> AbstractAsyncContextManager[tuple[HttpServer, int]]:
    return served(digest_app("guards"), parser, limits)


def _put(body: bytes, close: bool) -> bytes:
    return put_head(len(body), close) + body


@pytest.mark.parametrize("parser", PARSERS)
def test_large_bodies_arrive_whole_and_only_the_head_is_capped(parser: str) -> None:
    async def scenario() -> None:
        async with _served(parser, ServerLimits(max_head_bytes=1024)) as (_server, port):
            first, second = os.urandom(3 * 1024 * 1024 + 7), os.urandom(70_000)
            # Two requests on one connection, the first's head sent with 3 MiB of its body.
            answer = await exchange(port, _put(first, close=False) + _put(second, close=True))
            assert answer.count(b"HTTP/1.1 200") == 2
            for body in (first, second):
                assert hashlib.sha256(body).hexdigest().encode() in answer
                assert f'"size":{len(body)}'.encode() in answer

    asyncio.run(scenario())


@pytest.mark.parametrize("parser", PARSERS)
def test_a_head_beyond_the_limit_is_refused_and_closed(parser: str) -> None:
    async def scenario() -> None:
        async with _served(parser, ServerLimits(max_head_bytes=1024)) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            answer, lines = b"", 0
            while not answer and lines < 40:  # 100 bytes of headers at a time, no blank line
                writer.write(b"X-Filler: " + b"a" * 88 + b"\r\n")
                lines += 1
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(reader.read(4096), 0.05)
            writer.close()
            assert lines < 40  # answered before the 4000 bytes were all sent
            assert answer.split(b" ")[1] in (b"400", b"431")  # h11: 400, httptools: 431
            assert b"connection: close" in answer.lower()
            if parser == "httptools":
                assert server.counts["head_too_large"] == 1
            closing = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ok = await exchange(port, closing)
            assert ok.startswith(b"HTTP/1.1 200")

    asyncio.run(scenario())


@pytest.mark.parametrize("parser", PARSERS)
def test_silent_and_drip_fed_connections_are_closed_and_told_apart(parser: str) -> None:
    async def scenario() -> None:
        limits = ServerLimits(head_timeout=0.3)
        async with _served(parser, limits) as (server, port):
            # A kept-alive connection after a request is idle again, not a slow peer.
            reused = await asyncio.open_connection("127.0.0.1", port)
            reused[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reused[0].readuntil(b'ok"}')).startswith(b"HTTP/1.1 200")
            silent = await asyncio.open_connection("127.0.0.1", port)
            dripping = await asyncio.open_connection("127.0.0.1", port)
            head, written = b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 0
            for byte in head:  # one byte per 100 ms: bytes keep coming, the head never does
                if dripping[0].at_eof():
                    break
                dripping[1].write(bytes((byte,)))
                written += 1
                await asyncio.sleep(0.1)
            assert written < len(head)
            for reader, writer in (reused, silent, dripping):
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no reply
                writer.close()
        assert server.counts["idle_timeout"] == 2
        assert server.counts["slow_peer"] == 1

    asyncio.run(scenario())


def test_httptools_is_chosen_when_installed_and_h11_on_request() -> None:
    pytest.importorskip("httptools")
    assert protocol_base().__name__ == "HttpToolsProtocol"
    assert protocol_base("h11").__name__ == "H11Protocol"


@pytest.mark.parametrize("parser", PARSERS)
def test_a_threaded_server_serves_with_the_parser_asked(parser: str) -> None:
    with ThreadedServer(digest_app("guards"), parser=parser) as url:
        body = os.urandom(300_000)
        answer = httpx.put(f"{url}/digest", content=body).json()
        assert answer == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
