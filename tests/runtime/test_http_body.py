"""The httptools path hands a request body to the app piece by piece: no copies, flow control,
and a plain (Content-Length) body past the parser, which a new parser follows."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections import Counter
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect

from meterseal.runtime.auth import PUBLIC, access
from meterseal.runtime.connections import listen_socket
from meterseal.runtime.http import protocol_base, service_app
from meterseal.runtime.http_body import BODY_EXTENSION, BodyPieces, LlhttpBody, plain_length
from tests.runtime.raw_http import digest_app, exchange, put_head, served

pytestmark = pytest.mark.skipif(
    protocol_base() is protocol_base("h11"), reason="httptools not installed"
)


class _Flow:
    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _Cycle:
    """The parts of uvicorn's RequestResponseCycle that `_BodyPieces` uses."""

    def __init__(self) -> None:
        self.flow = _Flow()
        self.transport = _Transport()
        self.message_event = asyncio.Event()
        self.waiting_for_100_continue = False
        self.disconnected = False
        self.response_complete = False
        self.more_body = True
        self.receive: Any = None


def test_pieces_go_to_the_app_as_they_came_and_reading_pauses_above_the_buffer() -> None:
    async def scenario() -> None:
        cycle = _Cycle()
        body = BodyPieces(cycle, limit=100)
        assert cycle.receive == body.receive  # the cycle's ASGI task calls ours
        pieces = [bytes([i]) * 60 for i in range(3)]
        body.add(pieces[0])
        assert not cycle.flow.paused
        body.add(pieces[1])
        assert cycle.flow.paused  # 120 bytes wait for the app
        first = await cycle.receive()
        assert first["body"] is pieces[0]  # the parser's own bytes: not copied
        assert first["more_body"] is True
        assert not cycle.flow.paused  # 60 bytes left
        body.add(pieces[2])
        cycle.more_body = False  # the parser saw the end of the message
        cycle.message_event.set()
        second, third = await cycle.receive(), await cycle.receive()
        assert (second["body"], second["more_body"]) == (pieces[1], True)
        assert (third["body"], third["more_body"]) == (pieces[2], False)

        after = asyncio.ensure_future(cycle.receive())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not after.done()  # the body is out: it waits for the client to leave
        cycle.disconnected = True
        cycle.message_event.set()
        assert await after == {"type": "http.disconnect"}

    asyncio.run(scenario())


def test_an_app_waiting_for_the_body_wakes_on_a_piece_and_on_its_end() -> None:
    async def scenario() -> None:
        cycle = _Cycle()
        cycle.waiting_for_100_continue = True
        body = BodyPieces(cycle, limit=1 << 20)
        waiting = asyncio.ensure_future(cycle.receive())
        await asyncio.sleep(0)
        assert cycle.transport.written == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        body.add(b"abc")
        assert await waiting == {"type": "http.request", "body": b"abc", "more_body": True}
        waiting = asyncio.ensure_future(cycle.receive())
        await asyncio.sleep(0)
        cycle.more_body = False
        cycle.message_event.set()
        assert await waiting == {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(scenario())


async def _send_in_parts(parts: list[bytes]) -> bytes:
    """`parts` to a digest service on httptools, each read by the server before the next."""
    async with served(digest_app("bodies"), "httptools") as (_server, port):
        return await exchange(port, *parts, pause=0.05)


def _count_parsed_body(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of the body pieces llhttp hands over, recorded as they come."""
    taken: list[int] = []
    take = LlhttpBody.take_body

    def spy(self: LlhttpBody, data: bytes) -> None:
        taken.append(len(data))
        take(self, data)

    monkeypatch.setattr(LlhttpBody, "take_body", spy)
    return taken


def test_plain_bodies_bypass_the_parser_and_the_next_request_is_parsed_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = _count_parsed_body(monkeypatch)
    first, second = os.urandom(300_000), os.urandom(200_001)
    one, two = put_head(len(first)), put_head(len(second), close=True)
    # head + a few body bytes; the body's rest with the next request's head and some body;
    # that body's rest: the parser sees only heads and the body bytes sent along with them
    parts = [one + first[:100], first[100:] + two + second[:7], second[7:]]

    answer = asyncio.run(_send_in_parts(parts))
    assert answer.count(b"HTTP/1.1 200") == 2
    for body in (first, second):
        assert hashlib.sha256(body).hexdigest().encode() in answer
        assert f'"size":{len(body)}'.encode() in answer
    assert sum(taken) >= len(first) - 100 + len(second) - 7  # both bodies went past the parser


def test_a_chunked_body_still_goes_through_the_parser() -> None:
    body = os.urandom(70_000)
    head = b"PUT /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    chunked = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:30_000], body[30_000:])
    )
    parts = [head + b"Connection: close\r\n\r\n" + chunked[:10], chunked[10:] + b"0\r\n\r\n"]

    answer = asyncio.run(_send_in_parts(parts))
    assert b"HTTP/1.1 200" in answer
    assert hashlib.sha256(body).hexdigest().encode() in answer


def test_only_one_content_length_without_transfer_encoding_is_plain() -> None:
    assert plain_length([(b"content-length", b"12")]) == 12
    assert plain_length([(b"content-length", b"12"), (b"content-length", b"12")]) is None
    assert plain_length([(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]) is None
    assert plain_length([(b"content-length", b"-1")]) is None
    assert plain_length([(b"host", b"x")]) is None


def _pulling_app(view_size: int, outcomes: list[str]) -> FastAPI:
    counts: Counter[str] = Counter()
    app = service_app("pulls", "A test service.", counts, lambda: dict(counts))

    @app.put("/digest", dependencies=[access(PUBLIC)])
    async def digest(request: Request) -> dict[str, object]:
        read_into = request.scope["extensions"][BODY_EXTENSION]["read_into"]
        sha, size, reads = hashlib.sha256(), 0, []
        try:
            while True:
                view = memoryview(bytearray(view_size))
                got = await read_into(view)
                sha.update(view[:got])
                size += got
                reads.append(got)
                if got < view_size:
                    break
        except ClientDisconnect:
            outcomes.append("disconnect")
            raise
        outcomes.append("read")
        return {"size": size, "sha256": sha.hexdigest(), "reads": reads}

    return app


def test_an_app_pulls_a_plain_body_into_its_own_buffers_and_the_next_request_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = _count_parsed_body(monkeypatch)
    first, second = os.urandom(300_000), os.urandom(200_001)
    one, two = put_head(len(first)), put_head(len(second), close=True)
    # body bytes along with the head (through the parser), then straight into the app's
    # buffers; the second request arrives with the first body's end, each part read alone
    parts = [one + first[:100], first[100:150_000], first[150_000:] + two + second[:7], second[7:]]
    outcomes: list[str] = []

    async def scenario() -> bytes:
        async with served(_pulling_app(64_000, outcomes), "httptools") as (_server, port):
            return await exchange(port, *parts, pause=0.05)

    answer = asyncio.run(scenario())
    assert answer.count(b"HTTP/1.1 200") == 2
    for body in (first, second):
        assert hashlib.sha256(body).hexdigest().encode() in answer
        assert f'"size":{len(body)}'.encode() in answer
    assert b'"reads":[64000,64000,64000,64000,44000]' in answer  # full views, then the rest
    assert outcomes == ["read", "read"]
    # only bytes that came along with the next request's head went the pieces' way
    assert sum(taken) < len(first) - 150_000 + 200


def test_a_client_leaving_mid_body_ends_the_pull_with_client_disconnect() -> None:
    body = os.urandom(100_000)
    outcomes: list[str] = []

    async def scenario() -> None:
        async with served(_pulling_app(1 << 20, outcomes), "httptools") as (_server, port):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(put_head(2 * len(body)) + body)  # half the declared body, then gone
            await writer.drain()
            await asyncio.sleep(0.1)  # the app pulls, and waits for the rest of its view
            writer.close()
            for _ in range(500):
                await asyncio.sleep(0.01)
                if outcomes:
                    break

    asyncio.run(scenario())
    assert outcomes == ["disconnect"]


def test_accepted_connections_send_small_writes_at_once() -> None:
    server = listen_socket("127.0.0.1", 0)
    with server, socket.create_connection(server.getsockname()[:2]) as _client:
        accepted, _peer = server.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_pull_the_app_gives_up_hands_the_connection_back_for_the_next_request() -> None:
    counts: Counter[str] = Counter()
    app = service_app("gives up", "A test service.", counts, lambda: dict(counts))

    @app.put("/digest", dependencies=[access(PUBLIC)])
    async def give_up(request: Request) -> dict[str, object]:
        read_into = request.scope["extensions"][BODY_EXTENSION]["read_into"]
        pulling = asyncio.ensure_future(read_into(memoryview(bytearray(1 << 20))))
        await asyncio.sleep(0.05)  # some of the body went into the view
        pulling.cancel()
        return {"gave_up": True}

    body, after = os.urandom(300_000), put_head(3, close=True) + b"abc"
    # the head and part of the body; after the answer, the body's rest and a second request
    parts = [put_head(len(body)) + body[:100_000], body[100_000:] + after]

    async def scenario() -> bytes:
        async with served(app, "httptools") as (_server, port):
            return await exchange(port, *parts, pause=0.2)

    answer = asyncio.run(scenario())
    assert answer.count(b"HTTP/1.1 200") == 2  # the rest of the body was read past, not parsed
    assert answer.count(b'"gave_up":true') == 2
    assert b"connection: close" in answer.split(b"\r\n\r\n", 2)[1]  # the second request's
