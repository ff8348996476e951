"""Headers every service's answers carry unless a route sets its own.

`Cache-Control: no-store`: the services answer with customers' bills, readings, proofs and
keys; no cache between the caller and the service, nor the caller's own (a browser's, a
proxy's), may keep a copy. A route whose answer may be kept (a static file) says so itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

NO_STORE = (b"cache-control", b"no-store")


class NoStore:
    """ASGI middleware: `Cache-Control: no-store` on every HTTP answer without one."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the header to the answer's start when it has none."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    message = {**message, "headers": [*headers, NO_STORE]}
            await send(message)

        await self.app(scope, receive, sending)
