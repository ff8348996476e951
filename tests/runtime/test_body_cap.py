"""Bodies FastAPI reads whole before a route's guard runs are capped (runtime.body_cap).

FastAPI parses a route's JSON model before it runs the access guard: an anonymous caller's
64 MiB body to a route only operators may call was read whole and answered 422 (the JSON it
was not), never 401.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from meterseal.runtime import body_cap
from meterseal.runtime.auth import PUBLIC, UNAUTHENTICATED, HasRole, access
from meterseal.runtime.body_cap import MAX_PARSED_BODY
from meterseal.runtime.http import HttpServer, service_app

OPERATOR = HasRole("operator")


class Named(BaseModel):
    """A JSON body: one name."""

    name: str


def _app(seen: Counter[str]) -> FastAPI:
    counts: Counter[str] = Counter()
    app = service_app("capped", "A test service.", counts, lambda: dict(counts))

    @app.post("/v1/named", dependencies=[access(OPERATOR)])
    async def named(body: Named) -> dict[str, str]:
        seen["named"] += 1
        return {"name": body.name}

    @app.post("/v1/open", dependencies=[access(PUBLIC)])
    async def open_(body: Named) -> dict[str, int]:
        seen["open"] += 1
        return {"size": len(body.name)}

    @app.post("/v1/larger", dependencies=[access(PUBLIC)], max_body_size=4 * MAX_PARSED_BODY)
    async def larger(body: Named) -> dict[str, int]:
        return {"size": len(body.name)}

    @app.put("/v1/stream", dependencies=[access(PUBLIC)])
    async def stream(request: Request) -> dict[str, int]:
        size = 0
        async for piece in request.stream():  # a route reading its own stream caps it itself
            size += len(piece)
        return {"size": size}

    return app


def _json(size: int) -> bytes:
    """A JSON body of `size` bytes: a name padded with spaces."""
    body = json.dumps({"name": "a"}).encode()
    return body + b" " * (size - len(body))


async def _pieces(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`data` as a chunked body (no Content-Length)."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def _calls(*requests: tuple[str, str, bytes, bool]) -> tuple[list[httpx.Response], Counter[str]]:
    """(method, path, body, chunked) each to the app on the runtime server; the answers."""
    seen: Counter[str] = Counter()

    async def scenario() -> list[httpx.Response]:
        server = HttpServer(_app(seen))
        port = await server.start("127.0.0.1", 0)
        answers = []
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for method, path, body, chunked in requests:
                    content = _pieces(body) if chunked else body
                    headers = {"content-type": "application/json"}
                    answers.append(
                        await client.request(method, path, content=content, headers=headers)
                    )
        finally:
            await server.stop()
        return answers

    return asyncio.run(scenario()), seen


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_anonymous_body_over_the_cap_is_refused_before_it_is_read(chunked: bool) -> None:
    over = _json(MAX_PARSED_BODY + 1)
    (guarded, open_), seen = _calls(
        ("POST", "/v1/named", over, chunked), ("POST", "/v1/open", over, chunked)
    )
    assert guarded.status_code == 413, guarded.text
    assert guarded.json() == {"detail": f"body over {MAX_PARSED_BODY} bytes"}
    assert open_.status_code == 413, open_.text
    assert not seen


def test_bodies_within_the_cap_reach_the_guard_and_the_handler() -> None:
    within = _json(MAX_PARSED_BODY)
    (guarded, open_), seen = _calls(
        ("POST", "/v1/named", within, False), ("POST", "/v1/open", within, True)
    )
    assert guarded.status_code == 401
    assert guarded.json() == {"detail": UNAUTHENTICATED}
    assert open_.json() == {"size": 1}
    assert seen == {"open": 1}


def test_a_route_may_take_more_and_a_streaming_route_caps_its_own() -> None:
    big = _json(2 * MAX_PARSED_BODY)
    (larger, over, stream), _ = _calls(
        ("POST", "/v1/larger", big, False),
        ("POST", "/v1/larger", _json(4 * MAX_PARSED_BODY + 1), True),
        ("PUT", "/v1/stream", big + big, False),
    )
    assert larger.json() == {"size": 1}
    assert over.status_code == 413
    assert over.json() == {"detail": f"body over {4 * MAX_PARSED_BODY} bytes"}
    assert stream.json() == {"size": 4 * MAX_PARSED_BODY}


def test_a_body_that_stops_short_of_its_end_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # It held its connection and the bytes sent so far (up to the cap) for as long as the
    # sender liked: no HTTP timeout runs while a request's body is being read.
    monkeypatch.setattr(body_cap, "BODY_GRACE", 0.2)
    monkeypatch.setattr(body_cap, "MIN_BODY_RATE", 1 << 40)  # the cap's bytes take no time
    seen: Counter[str] = Counter()

    async def scenario() -> bytes:
        server = HttpServer(_app(seen))
        port = await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = (
                "POST /v1/open HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 100\r\n\r\n"
            )
            writer.write(head.encode() + b'{"name": "a"' + b" " * 38)  # 50 of its 100 bytes
            await writer.drain()
            try:
                return await asyncio.wait_for(reader.read(4096), 30)
            finally:
                writer.close()
        finally:
            await server.stop()

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'{"detail":"body not received in time"}' in answer
    assert not seen
