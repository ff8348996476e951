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

An app may instead pull the body into buffers of its own: `scope["extensions"][BODY_EXTENSION]
["read_into"](view)` fills `view` with the body's next bytes. The part of a plain body past the
parser then goes from the socket straight into `view` (the transport reads into it as a
`BufferedProtocol`: one copy, one wake-up per socket read, none per piece), and reading stops
between two calls, as it does while `body_buffer` bytes wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect

try:
    import httptools
except ImportError:  # pragma: no cover - httptools is in the base install
    httptools = None  # type: ignore[assignment]


BODY_EXTENSION = "meterseal.body"  # scope["extensions"][...]["read_into"]: BodyPieces.read_into
LOW_WATER = 1 << 20  # a pull wakes the event loop once this many bytes wait (SO_RCVLOWAT)
Pull = Callable[[memoryview], Awaitable[int] | None]  # socket bytes straight into a view


class BodyPieces:
    """A request's body handed to the app piece by piece, one per ASGI `receive`.

    Reading pauses while more than `limit` bytes wait for the app (a slow app does not make
    the server hold a whole body).
    """

    def __init__(self, cycle: Any, limit: int, pull: Pull | None = None) -> None:
        self.cycle = cycle
        self.limit = limit
        self.pull = pull  # None, or returns None, when the socket's bytes are not all body
        self.pieces: deque[bytes | memoryview] = deque()
        self.held = 0
        cycle.receive = self.receive  # read by the cycle's ASGI task, which starts later

    def add(self, piece: bytes) -> None:
        """One more piece of the body."""
        self.pieces.append(piece)
        self.held += len(piece)
        if self.held > self.limit:
            self.cycle.flow.pause_reading()
        self.cycle.message_event.set()

    def _continue(self) -> None:
        cycle = self.cycle
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False

    async def receive(self) -> dict[str, Any]:
        """The next piece; else, once one arrives, the body ends or the client leaves."""
        cycle = self.cycle
        self._continue()
        if not self.pieces and not cycle.disconnected and not cycle.response_complete:
            cycle.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected or cycle.response_complete:
            return {"type": "http.disconnect"}
        body: bytes | memoryview = b""
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
        return {"type": "http.request", "body": bytes(body), "more_body": more}

    async def read_into(self, view: memoryview) -> int:
        """Fill `view` with the body's next bytes (fewer only where the body ends); how many.

        Pieces already received are copied first; past the parser the socket's bytes go
        straight into `view`. ClientDisconnect when the client leaves first.
        """
        cycle, filled = self.cycle, 0
        self._continue()
        while filled < len(view):
            if self.pieces:
                filled += self._copy_piece(view[filled:])
                continue
            if cycle.disconnected:
                raise ClientDisconnect
            if not cycle.more_body:
                break
            pulled = self.pull(view[filled:]) if self.pull is not None else None
            if pulled is not None:
                filled += await pulled
                continue
            cycle.flow.resume_reading()  # a piece through the parser, or the body's end
            await cycle.message_event.wait()
            cycle.message_event.clear()
        return filled

    def _copy_piece(self, view: memoryview) -> int:
        piece = self.pieces[0]
        take = min(len(piece), len(view))
        view[:take] = memoryview(piece)[:take]
        if take == len(piece):
            self.pieces.popleft()
        else:
            self.pieces[0] = memoryview(piece)[take:]
        self.held -= take
        return take


def _low_water(transport: Any, size: int) -> None:
    """Wake the loop only once `size` bytes wait in the socket (Linux caps it at half the
    receive buffer, which it grows to fit); a pull of 4 MiB takes a few reads, not hundreds.

    Plain TCP only: under TLS part of a record may already sit in the TLS layer's buffer, so
    fewer bytes than the view still lacks can be all the socket will ever get."""
    sock = transport.get_extra_info("socket")
    if transport.get_extra_info("ssl_object") is not None:
        return
    if sock is not None and hasattr(socket, "SO_RCVLOWAT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, max(1, size))


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
        """A new request: its body goes to the app piece by piece, or pulled."""
        before = self.cycle
        super().on_headers_complete()  # type: ignore[misc]
        if self.cycle is before:  # an upgrade: no new request
            return
        body = self._body = BodyPieces(self.cycle, self.body_buffer)
        body.pull = lambda view: self._pull(body, view)
        # The cycle's ASGI task, which reads the scope, starts on the loop's next turn.
        extensions = self.cycle.scope.setdefault("extensions", {})
        extensions[BODY_EXTENSION] = {"read_into": body.read_into}
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

    def _pull(self, body: BodyPieces, view: memoryview) -> asyncio.Future[int] | None:
        """Body bytes from the socket straight into `view` while they bypass the parser (and
        none wait as pieces); None otherwise."""
        transport = self.transport  # type: ignore[attr-defined]
        if body is not self._body or self._left <= 0 or body.pieces or transport.is_closing():
            return None
        puller = _Puller(self, view[: self._left])
        transport.set_protocol(puller)
        _low_water(transport, min(len(puller.view), LOW_WATER))
        self.cycle.flow.resume_reading()
        # A pull the app gave up (its task cancelled) hands the connection back all the same.
        puller.done.add_done_callback(lambda _done: self.pulled(puller))
        return puller.done

    def pulled(self, puller: _Puller) -> None:
        """A pull ended (its view is full, the connection went, or the app gave it up): the
        protocol is back."""
        if puller.ended:
            return
        puller.ended = True
        self._left -= puller.filled
        if not puller.lost:
            _low_water(self.transport, 1)  # type: ignore[attr-defined]
            self.transport.set_protocol(self)  # type: ignore[attr-defined]
            if self._left:
                if not self.cycle.response_complete:  # else the rest is read past, dropped
                    self.cycle.flow.pause_reading()  # until the app asks for more
            else:
                self._next_request()
        if not puller.done.done():
            puller.done.set_result(puller.filled)

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
        self._next_request()
        rest = data[size:]
        if rest and self.cycle.keep_alive:  # after a closing request llhttp ignores the rest too
            self.data_received(rest)  # type: ignore[attr-defined]

    def _next_request(self) -> None:
        """The body's end past the parser: a new parser for what follows, the message done."""
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # httptools < 0.6.3, as uvicorn
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.on_message_complete()  # type: ignore[attr-defined]


class _Puller(asyncio.BufferedProtocol):
    """The connection's protocol while body bytes go from the socket into an app's view;
    everything but the bytes goes to the HTTP protocol it stands in for."""

    def __init__(self, owner: LlhttpBody, view: memoryview) -> None:
        self.owner = owner
        self.view = view
        self.filled = 0
        self.lost = False
        self.ended = False
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport reads to: the rest of the view."""
        return self.view[self.filled :]

    def buffer_updated(self, nbytes: int) -> None:
        """`nbytes` more in the view; a full view ends the pull."""
        self.filled += nbytes
        rest = len(self.view) - self.filled
        if not rest:
            self.owner.pulled(self)
        elif rest < LOW_WATER:  # no more than the rest may be waited for
            _low_water(self.owner.transport, rest)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        """The HTTP protocol's answer."""
        answer: bool | None = self.owner.eof_received()  # type: ignore[attr-defined]
        return answer

    def connection_lost(self, exc: Exception | None) -> None:
        """The HTTP protocol learns it; the pull ends with what it has."""
        self.lost = True
        self.owner.connection_lost(exc)  # type: ignore[attr-defined]
        self.owner.pulled(self)

    def pause_writing(self) -> None:
        """The HTTP protocol's flow control."""
        self.owner.pause_writing()  # type: ignore[attr-defined]

    def resume_writing(self) -> None:
        """The HTTP protocol's flow control."""
        self.owner.resume_writing()  # type: ignore[attr-defined]
