"""The cap on request bodies that FastAPI itself reads whole: every `service_app` route's.

FastAPI reads the body of a route that takes a model (JSON) whole, and parses it, before it
runs the route's dependencies, its access guard among them: uncapped, an anonymous caller
could make the server hold a body of any size on every connection it may open. So the app
factory makes its routes `ParsedBodyRoute`s: such a body is refused with 413 beyond
`MAX_PARSED_BODY` bytes (declared in Content-Length: before a byte of it is read; chunked: as
it arrives), or beyond the route's own `max_body_size=`. Routes that read the stream
themselves (the KVS gateway's objects, the receiver's batches, the CAS's quotes) cap it there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Bytes of a parsed body: a route that takes more says so with `max_body_size=`.
MAX_PARSED_BODY = 1 << 20


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


def _capped_body(app: ASGIApp, limit: int) -> ASGIApp:
    """`app` whose request body ends in 413 beyond `limit` bytes (the app's error handlers
    answer it, as any refusal of the route: JSON, or the portal's page)."""

    async def capped(scope: Scope, receive: Receive, send: Send) -> None:
        declared, received = Headers(scope=scope).get("content-length", ""), 0

        async def receive_capped() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > limit:
                raise HTTPException(413, f"body over {limit} bytes")  # nothing of it read
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"body over {limit} bytes")
            return message

        await app(scope, receive_capped, send)

    return capped
