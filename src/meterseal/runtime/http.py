"""The HTTP side of every service: the app factory, its uvicorn server and limits.

`service_app` builds a FastAPI app with OpenAPI, `/healthz` and `/v1/counters`, each route
declaring its access rule (`runtime.auth`). `HttpServer` serves one in the current event loop:
it refuses to start an app with a route that declares none, binds IPv4, IPv6 or a host name
itself, and closes connections whose next request head does not arrive in time or runs past
`max_head_bytes`. It parses with uvicorn's httptools (llhttp) protocol when httptools is
installed (bodies of many MiB: the KVS gateway; each piece the parser hands over goes to the
app as it is, and reading pauses while `body_buffer` bytes wait) and with h11 otherwise. Given an
`ssl.SSLContext` (`runtime.tls`) it serves HTTPS only: the handshake starts once the
connection caps admitted the connection and must end within the head timeout, and a verified
client certificate reaches the app's authenticator as the calling service's identity.
`HttpAppService` runs an app as a `Stage` under `serve_stage`; `ThreadedServer` runs one on
its own loop in a thread (tests and benches). The head-end's receiver of readings
(`acquisition.http`) and the CAS and billing APIs are built on these.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # llhttp parses request bodies several times faster than h11 (16 MiB PUTs)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is in the base install
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

from meterseal.runtime.address import format_address, parse_address
from meterseal.runtime.auth import PUBLIC, access, check_access
from meterseal.runtime.body_cap import ParsedBodyRoute
from meterseal.runtime.connections import (
    ConnectionGate,
    ConnectionLimits,
    RefusalLog,
    listen_socket,
    no_delay,
    reset_on_close,
    source_key,
)
from meterseal.runtime.headers import NoStore
from meterseal.runtime.http_body import LlhttpBody
from meterseal.runtime.metrics import ServiceMetrics
from meterseal.runtime.peer import with_peer_certificates
from meterseal.runtime.readiness import Readiness
from meterseal.runtime.tls import tls_scope


@dataclass(frozen=True)
class ServerLimits(ConnectionLimits):
    """Connection-level caps of an HTTP service (plus the connection caps per source and all)."""

    head_timeout: float = 10.0  # between requests, the next request head must arrive within this
    keep_alive: int = 5  # an idle connection is closed after this (seconds)
    max_head_bytes: int = 16 * 1024  # larger request heads are refused (431, closed)
    body_buffer: int = 1024 * 1024  # request body bytes held for the app before reading pauses
    shutdown_timeout: int = 15  # stop() cancels requests still running after this


class Problem(BaseModel):
    """An error body: `detail` says what is wrong; for a malformed request, a list per field."""

    detail: str | list[dict[str, Any]]


# Declared on every route of every app (a route's own declaration of a status wins), so the
# OpenAPI description covers every error body a caller can get: FastAPI's validation list
# and our one-line reasons alike.
REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Not signed in, where the route's rule needs it."},
    403: {"model": Problem, "description": "Signed in, but the route's rule does not allow it."},
    422: {"model": Problem, "description": "Malformed (a list per field) or inconsistent."},
    429: {"model": Problem, "description": "Too many attempts: retry after a while."},
    503: {"model": Problem, "description": "Unavailable (the store): retry later."},
}


def service_app(
    title: str, description: str, counts: Counter[str], counters: Callable[[], dict[str, Any]]
) -> FastAPI:
    """A service's app: OpenAPI, /healthz, /v1/counters (`counters()`), `state.counts`."""
    app = FastAPI(title=title, version="1", description=description, responses=REFUSALS)
    app.router.route_class = ParsedBodyRoute  # the routes added from now on
    app.add_middleware(NoStore)  # answers hold customers' data: no cache keeps them
    app.state.counts = counts  # `HttpServer` adds its connection-level refusals here
    app.state.refusal_logs = []  # the app's own RefusalLogs: `HttpServer.stop` flushes them

    @app.get("/healthz", summary="Liveness", dependencies=[access(PUBLIC)])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/counters", summary="Service counters", dependencies=[access(PUBLIC)])
    async def service_counters() -> dict[str, Any]:
        return counters()

    return app


class _Handshaking(asyncio.Protocol):
    """Holds what arrives between the end of a TLS handshake and h11 taking the connection."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        """Keep it for h11 (a TLS 1.3 client sends its request with its Finished)."""
        self.received.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """Remember it for h11."""
        self.lost = (exc,)


TOO_LARGE_HEAD = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 25\r\nconnection: close\r\n\r\nrequest head is too large"
)


def protocol_base(parser: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's protocol the guards wrap: httptools' when installed (or asked), else h11's."""
    if parser == "httptools" or (parser == "auto" and HttpToolsProtocol is not None):
        if HttpToolsProtocol is None:
            raise ImportError("httptools is not installed")
        return HttpToolsProtocol
    return H11Protocol


def _guarded(
    timeout: float,
    counts: Counter[str],
    gate: ConnectionGate,
    refusals: RefusalLog,
    tls: ssl.SSLContext | None,
    max_head: int,
    base: type[asyncio.Protocol],
    body_buffer: int = ServerLimits.body_buffer,
) -> type[asyncio.Protocol]:
    """uvicorn's protocol `base` under the guards (the llhttp body path with httptools')."""
    llhttp = base is not H11Protocol

    class Guarded(LlhttpBody, base):  # type: ignore[valid-type,misc]
        """uvicorn's protocol under the connection caps, whose peer must send each request
        head in time and within `max_head` bytes (h11 refuses larger ones itself).

        With `tls`, the TLS handshake starts only once the caps admitted the connection, and
        must end within `timeout` (a connection that never says hello is not held longer).
        """

        app: Any  # the ASGI app (with the TLS scope once secured)
        _head_bytes = 0  # httptools: bytes of the request head received so far

        _deadline: asyncio.TimerHandle | None = None
        _source: str | None = None  # set once admitted
        _handshake: asyncio.Task[None] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            peer = transport.get_extra_info("peername")
            source = source_key(peer[0]) if isinstance(peer, tuple) else "local"
            refusal = gate.admit(source)
            if refusal is not None:  # uvicorn never sees it
                refusals.note(refusal, source)
                reset_on_close(transport.get_extra_info("socket"))
                transport.abort()  # the transport closes the socket: never close it here
                return
            self._source = source
            if tls is None:
                self._serve(transport)
                return
            transport.pause_reading()  # not one byte reaches h11 before the handshake is done
            self._handshake = asyncio.get_running_loop().create_task(self._secure(transport))

        async def _secure(self, transport: asyncio.Transport) -> None:
            assert tls is not None
            waiting = _Handshaking()
            try:
                secured = await asyncio.get_running_loop().start_tls(
                    transport, waiting, tls, server_side=True, ssl_handshake_timeout=timeout
                )
            except (OSError, RuntimeError):  # a bad or slow hello, or a peer already gone
                counts["tls_handshake_failed"] += 1
                transport.abort()
                self._release()
                return
            if secured is None:  # the connection went while shaking hands
                self._release()
                return
            secured.set_protocol(self)
            self._serve(secured)
            for data in waiting.received:
                self.data_received(data)
            if waiting.lost is not None:
                self.connection_lost(waiting.lost[0])

        def _serve(self, transport: asyncio.Transport) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                no_delay(sock)  # where the listener's was not inherited
            super().connection_made(transport)
            scope = tls_scope(transport.get_extra_info("ssl_object"))
            if scope is not None:
                self.app = _with_tls_scope(self.app, scope)
            self._watch()

        def _release(self) -> None:
            if self._source is not None:
                gate.release(self._source)
                self._source = None

        def data_received(self, data: bytes) -> None:
            if llhttp and self.taking_body():
                self.take_body(data)  # its end hands what follows back to this method
                self._watch()
                return
            if llhttp and not self._serving():
                self._head_bytes += len(data)  # counts a body sent along with its head too
            super().data_received(data)
            if llhttp and self._head_bytes > max_head and not self._serving():
                self._refuse_head()  # the head is still incomplete after max_head bytes
                return
            if llhttp:
                self.parsed()
            self._watch()

        def on_headers_complete(self) -> None:
            self._head_bytes = 0
            super().on_headers_complete()

        def _refuse_head(self) -> None:
            counts["head_too_large"] += 1
            self.transport.write(TOO_LARGE_HEAD)
            self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._source is None:
                return  # refused in connection_made, or its handshake failed
            self._release()
            self._cancel()
            super().connection_lost(exc)

        def _serving(self) -> bool:
            cycle = self.cycle  # None until the first request head
            return cycle is not None and not cycle.response_complete

        def _watch(self) -> None:
            # Armed while no request is being served, from the moment that began: drip-fed
            # bytes do not extend it (uvicorn's keep-alive timer restarts on every byte).
            if self._serving():
                self._cancel()
            elif self._deadline is None and not self.transport.is_closing():
                self._deadline = self.loop.call_later(timeout, self._expired)

        def _expired(self) -> None:
            self._deadline = None
            if not self._serving() and not self.transport.is_closing():
                idle = self._idle()
                counts["idle_timeout" if idle else "slow_peer"] += 1
                self.transport.close()

        def _idle(self) -> bool:
            if llhttp:
                return self._head_bytes == 0
            return bool(self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0])

        def _cancel(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

    Guarded.body_buffer = body_buffer
    return Guarded


def _with_tls_scope(app: Any, tls: dict[str, Any]) -> Any:
    """`app` with the connection's ASGI ``tls`` extension in every request's scope."""

    async def with_tls(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
        await app(scope, receive, send)

    return with_tls


def _know_peers(app: FastAPI) -> None:
    """Let the app's authenticator know services by their client certificates."""
    current = getattr(app.state, "authenticator", None)
    if not getattr(current, "peer_certificates", False):
        app.state.authenticator = (
            with_peer_certificates(current) if current else with_peer_certificates()
        )


class HttpServer:
    """A `service_app` served by uvicorn in the current event loop (HTTPS given `tls`)."""

    def __init__(
        self,
        app: FastAPI,
        limits: ServerLimits | None = None,
        tls: ssl.SSLContext | None = None,
        parser: str = "auto",
    ) -> None:
        self.app = app
        self.limits = limits or ServerLimits()
        self.tls = tls
        self.protocol = protocol_base(parser)  # "auto", "httptools" or "h11"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.gate: ConnectionGate | None = None  # set by start()
        self._refusals: RefusalLog | None = None

    @property
    def counts(self) -> Counter[str]:
        """What the service refused or dropped, by reason; plus what it counts itself."""
        counts: Counter[str] = self.app.state.counts
        return counts

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port. UndeclaredAccess if a route declares no rule."""
        check_access(self.app)
        # Bind here: uvicorn turns a bind failure into sys.exit, which would end the event loop.
        sock = listen_socket(host, port)
        self.gate = self.limits.gate(self.counts)
        self._refusals = RefusalLog(self.app.title, self.limits.refusal_log_interval)
        if self.tls is not None:
            _know_peers(self.app)
        config = uvicorn.Config(
            self.app,
            http=_guarded(
                self.limits.head_timeout,
                self.counts,
                self.gate,
                self._refusals,
                self.tls,
                self.limits.max_head_bytes,
                self.protocol,
                self.limits.body_buffer,
            ),
            lifespan="off",
            log_config=None,  # leave the embedding process's logging alone
            access_log=False,  # one line per request is noise; counters tell the story
            proxy_headers=False,  # the client address is the real peer unless a proxy is set up
            server_header=False,
            timeout_keep_alive=self.limits.keep_alive,
            h11_max_incomplete_event_size=self.limits.max_head_bytes,
            timeout_graceful_shutdown=self.limits.shutdown_timeout,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError("HTTP server stopped during startup")
            await asyncio.sleep(0.005)
        return int(sock.getsockname()[1])

    def url(self, host: str, port: int) -> str:
        """The URL this server answers at on `host`:`port` (https when it serves TLS)."""
        return f"{'http' if self.tls is None else 'https'}://{format_address(host, port)}"

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (up to shutdown_timeout), close."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        if self._refusals is not None:
            self._refusals.close()
        for summary in getattr(self.app.state, "refusal_logs", ()):
            summary.close()  # what was noted since its last line is not lost


def _snapshot(counts: Counter[str]) -> dict[str, int]:
    return dict(dict.copy(counts))


class HttpAppService:
    """One of our apps (the CAS, the bills API) served as a `Stage` under `serve_stage`."""

    def __init__(
        self,
        name: str,
        app: FastAPI,
        listen: str,
        default_port: int,
        tls: ssl.SSLContext | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        self.name = name
        self.app = app
        self.readiness = readiness or Readiness()  # the store behind the app, say
        self.address = parse_address(listen, default_port)
        self.server = HttpServer(app, tls=tls)
        self.metrics = ServiceMetrics(name)
        self.metrics.bridge(
            "meterseal_requests",
            "Requests by outcome and connections refused or closed, by kind",
            "kind",
            lambda: app.state.counts,
        )

    async def start(self) -> dict[str, str]:
        """Listen; the app's URL."""
        port = await self.server.start(*self.address)
        scheme = "http" if self.server.tls is None else "https"
        return {self.name: f"{scheme}://{format_address(self.address.host, port)}"}

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until stopped."""
        await stop.wait()

    async def stop(self) -> None:
        """Finish running requests, close."""
        await self.server.stop()

    def counters(self) -> dict[str, Any]:
        """The app's own counters."""
        return {self.name: _snapshot(self.app.state.counts)}


class ThreadedServer:
    """An app served by `HttpServer` on its own event loop in a thread (tests and benches)."""

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        parser: str = "auto",
    ) -> None:
        self.app = app
        self.host = host
        self.tls = tls
        self.parser = parser  # as HttpServer's: "auto", "httptools" or "h11"
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="http-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = HttpServer(self.app, tls=self.tls, parser=self.parser)
        port = await server.start(self.host, 0)
        scheme = "http" if self.tls is None else "https"
        self.url = f"{scheme}://{format_address(self.host, port)}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop()

    def __enter__(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self.url:
            raise OSError(f"the server did not start: {self._error}")
        return self.url

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
