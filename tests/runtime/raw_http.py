"""A digest service and raw-socket requests to it: the runtime server's tests speak HTTP/1.1
byte by byte, so a body can arrive with the head, split across writes, or with the next
request's head."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from meterseal.runtime.auth import PUBLIC, access
from meterseal.runtime.http import HttpServer, ServerLimits, service_app


def digest_app(title: str) -> FastAPI:
    """A service whose `PUT /digest` answers the body's size and SHA-256, read as a stream."""
    counts: Counter[str] = Counter()
    app = service_app(title, "A test service.", counts, lambda: dict(counts))

    @app.put("/digest", dependencies=[access(PUBLIC)])
    async def digest(request: Request) -> dict[str, object]:
        sha, size = hashlib.sha256(), 0
        async for piece in request.stream():
            sha.update(piece)
            size += len(piece)
        return {"size": size, "sha256": sha.hexdigest()}

    return app


@asynccontextmanager
async def served(
    app: FastAPI, parser: str, limits: ServerLimits | None = None
) -> AsyncIterator[tuple[HttpServer, int]]:
    """`app` on the runtime server with `parser`, on a free port of 127.0.0.1."""
    server = HttpServer(app, limits, parser=parser)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.stop()


def put_head(length: int, close: bool = False) -> bytes:
    """The head of a `PUT /digest` of a `length`-byte body (Connection: close if `close`)."""
    extra = "Connection: close\r\n" if close else ""
    return f"PUT /digest HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


async def exchange(port: int, *parts: bytes, pause: float = 0.0) -> bytes:
    """Send `parts` on one connection (`pause` s after each, to be read apart); all it answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for part in parts:
        writer.write(part)
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer
