"""The cap on request bodies that FastAPI itself reads whole: every `service_app` route's.

FastAPI reads the body of a route that takes a model (JSON) whole, and parses it, before it
runs the route's dependencies, its access guard among them: uncapped, an anonymous caller
could make the server hold a body of any size on every connection it may open. So the app
factory makes its routes `ParsedBodyRoute`s: such a body is refused with 413 beyond
`MAX_PARSED_BODY` bytes (declared in Content-Length: before a byte of it is read; chunked: as
it arrives), or beyond the route's own `max_body_size=`, and with 408 unless it is all in
within `BODY_GRACE` seconds plus its cap's time at `MIN_BODY_RATE` (37 s for 1 MiB): a body
that stops short of its end must not hold its memory and its connection for ever. Routes that
read the stream themselves (the KVS gateway's objects, the receiver's batches, the CAS's
quotes) cap it there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Bytes of a parsed body: a route that takes more says so with `max_body_size=`.
MAX_PARSED_BODY = 1 << 20
BODY_GRACE = 5.0  # seconds a parsed body may take beyond its cap's bytes at MIN_BODY_RATE
MIN_BODY_RATE = 32 * 1024  # bytes a second (the readings receiver's floor)


class ParsedBodyRoute(APIRoute):
    """A route whose body FastAPI parses takes at most MAX_PARSED_BODY bytes (413 beyond),
    unless it declares its own `max_body_size` (which any route may, to cap its body)."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        max_body_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        # FastAPI's own `max_body_size` answers in plain text: the cap is applied here instead.
        super().__init__(path, endpoint, **kwargs)
        if max_body_size is not None or self.body_field is not None:
            self.app = _capped_body(
                self.app, MAX_PARSED_BODY if max_body_size is None else max_body_size
            )


def body_deadline(limit: int) -> float:
    """When a body of at most `limit` bytes, starting now, must be all in (the loop's clock)."""
    return asyncio.get_running_loop().time() + BODY_GRACE + limit / MIN_BODY_RATE


def _capped_body(app: ASGIApp, limit: int) -> ASGIApp:
    """`app` whose request body ends in 413 beyond `limit` bytes and in 408 when it is not all
    in by its deadline (the app's error handlers answer both, as any refusal of the route:
    JSON, or the portal's page)."""

    async def capped(scope: Scope, receive: Receive, send: Send) -> None:
        declared, received, ended = Headers(scope=scope).get("content-length", ""), 0, False
        deadline: float | None = None  # set at the body's first read

        async def receive_capped() -> Message:
            nonlocal received, deadline, ended
            if ended:  # the body is in: a later receive waits for the client to leave
                return await receive()
            if declared.isdigit() and int(declared) > limit:
                raise HTTPException(413, f"body over {limit} bytes")  # nothing of it read
            if deadline is None:
                deadline = body_deadline(limit)
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, "body not received in time") from None
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"body over {limit} bytes")
            ended = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await app(scope, receive_capped, send)

    return capped
