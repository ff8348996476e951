"""Request bodies on the runtime's llhttp (httptools) server protocol: to the app as they arrive.

`BodyPieces` hands the app each piece of a body as it came, one per ASGI `receive` (uvicorn's
own cycle appends every piece to one bytearray and copies that out on each `receive`), and
pauses reading while more than the server's `body_buffer` bytes wait for the app.

`LlhttpBody`, mixed into uvicorn's httptools protocol by `runtime.http`, lets the body of a
request with one Content-Length and no Transfer-Encoding bypass the parser once its head is
parsed: llhttp's body callback copies every byte into a new bytes object (on a 16 MiB PUT to
the KVS gateway, 40% of the event loop's time), whereas the bytes the socket gave go to the app
as they are. The parser counts nothing of what it does not see, so at the body's end it is
replaced by a new one for the connection's next request. Chunked bodies (and the body bytes
that arrive along with the head) still go through the parser.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

try:
    import httptools
except ImportError:  # pragma: no cover - httptools is in the base install
    httptools = None  # type: ignore[assignment]


class BodyPieces:
    """A request's body handed to the app piece by piece, one per ASGI `receive`.

    Reading pauses while more than `limit` bytes wait for the app (a slow app does not make
    the server hold a whole body).
    """

    def __init__(self, cycle: Any, limit: int) -> None:
        self.cycle = cycle
        self.limit = limit
        self.pieces: deque[bytes] = deque()
        self.held = 0
        cycle.receive = self.receive  # read by the cycle's ASGI task, which starts later

    def add(self, piece: bytes) -> None:
        """One more piece of the body."""
        self.pieces.append(piece)
        self.held += len(piece)
        if self.held > self.limit:
            self.cycle.flow.pause_reading()
        self.cycle.message_event.set()

    async def receive(self) -> dict[str, Any]:
        """The next piece; else, once one arrives, the body ends or the client leaves."""
        cycle = self.cycle
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        if not self.pieces and not cycle.disconnected and not cycle.response_complete:
            cycle.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected or cycle.response_complete:
            return {"type": "http.disconnect"}
        body = b""
        if self.pieces:
            body = self.pieces.popleft()
            self.held -= len(body)
            if self.held <= self.limit:
                cycle.flow.resume_reading()
            if not self.pieces:
                # What set the event is in hand (the piece, more_body): once the body is all
                # out, the next receive must wait for the client to leave, not spin.
                cycle.message_event.clear()
        more = bool(self.pieces) or cycle.more_body
        return {"type": "http.request", "body": body, "more_body": more}


def plain_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body length of a request with one Content-Length and no Transfer-Encoding."""
    lengths = [value for name, value in headers if name == b"content-length"]
    if len(lengths) != 1 or any(name == b"transfer-encoding" for name, _ in headers):
        return None
    value = lengths[0].strip()
    return int(value) if value.isdigit() else None


class LlhttpBody:
    """The body path of the guarded httptools protocol (the attributes are uvicorn's)."""

    body_buffer: int  # set by runtime.http: bytes held for the app before reading pauses
    cycle: Any
    parser: Any
    headers: list[tuple[bytes, bytes]]
    _body: BodyPieces
    _length: int | None = None  # the request's body length while it may bypass the parser
    _seen = 0  # body bytes of the request the parser handed over
    _left = 0  # body bytes still to come past the parser

    def on_headers_complete(self) -> None:
        """A new request: its body goes to the app piece by piece."""
        before = self.cycle
        super().on_headers_complete()  # type: ignore[misc]
        if self.cycle is before:  # an upgrade: no new request
            return
        self._body = BodyPieces(self.cycle, self.body_buffer)
        self._seen = 0
        self._length = plain_length(self.headers)

    def on_body(self, body: bytes) -> None:
        """A piece of the body through the parser (chunked, or sent along with the head)."""
        self._seen += len(body)
        if self._dropped():
            return
        self._body.add(body)

    def _dropped(self) -> bool:
        upgrade = self.parser.should_upgrade() and self._should_upgrade()  # type: ignore[attr-defined]
        return bool(upgrade or self.cycle.response_complete)

    def parsed(self) -> None:
        """After the parser took a piece: the rest of a plain body bypasses it."""
        length, self._length = self._length, None
        cycle = self.cycle
        if length is None or cycle is None or not cycle.more_body or httptools is None:
            return
        if self.transport.is_closing():  # type: ignore[attr-defined]
            return  # refused (a 400): nothing more is read
        self._left = length - self._seen

    def taking_body(self) -> bool:
        """Whether the next bytes are body bytes that bypass the parser."""
        return self._left > 0

    def take_body(self, data: bytes) -> None:
        """Body bytes past the parser; at the body's end, a new parser for what follows."""
        self._unset_keepalive_if_required()  # type: ignore[attr-defined]
        size = min(len(data), self._left)
        self._left -= size
        if not self.cycle.response_complete:  # as uvicorn: a body after the response is dropped
            self._body.add(data if size == len(data) else data[:size])
        if self._left:
            return
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # httptools < 0.6.3, as uvicorn
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.on_message_complete()  # type: ignore[attr-defined]
        rest = data[size:]
        if rest and self.cycle.keep_alive:  # after a closing request llhttp ignores the rest too
            self.data_received(rest)  # type: ignore[attr-defined]
