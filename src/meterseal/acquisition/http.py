"""HTTP receiver and meter side: POST sealed packets, one ack per packet once it is durable.

`POST /v1/readings` carries one packet (application/cose), `POST /v1/readings/batch` a CBOR
array of packets (application/cbor). Like the TCP receiver it holds no key: it moves bytes to
`Ingest` and answers once each packet is durable or refused, never saying why it was refused.

`service_app` and `HttpServer` are the service skeleton other HTTP services build on (the
billing API in `meterseal.billing.api`): the same /healthz, counters, OpenAPI and limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import h11
import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from meterseal.acquisition.ingest import Ack, PacketIntake
from meterseal.acquisition.stages import Incoming
from meterseal.crypto import cose
from meterseal.crypto.packet import MAX_PACKET_BYTES

SINGLE_TYPES = ("application/cose", "application/octet-stream")
BATCH_TYPES = ("application/cbor",)
_CBOR_HEAD = 9  # longest CBOR item head: what framing may add per packet and for the array
_ACKS = {ack.name.lower(): ack for ack in Ack}

AckName = Literal["accepted", "rejected", "retry"]


@dataclass(frozen=True)
class HttpLimits:
    """Caps that keep one peer from hurting the others."""

    max_packet: int = MAX_PACKET_BYTES
    max_batch: int = 256
    max_inflight: int = 256  # requests being read or awaiting acks; beyond this: 503
    max_pending: int = 10_000  # packets queued in Ingest; beyond this: 503
    body_timeout: float = 10.0  # a request body must be complete within this
    head_timeout: float = 10.0  # between requests, the next request head must arrive within this
    keep_alive: int = 5  # an idle connection is closed after this (seconds)
    max_head_bytes: int = 16 * 1024  # larger request heads are refused by h11
    retry_after: int = 1  # seconds, sent with every 503
    shutdown_timeout: int = 15  # stop() cancels requests still running after this

    @property
    def max_batch_body(self) -> int:
        """The largest batch body: max_batch packets of max_packet bytes plus CBOR framing."""
        return self.max_batch * (self.max_packet + _CBOR_HEAD) + _CBOR_HEAD


class PacketStatus(BaseModel):
    """The ack of one packet, deliberately without a reason."""

    status: AckName


class BatchAcks(BaseModel):
    """The acks of a batch, in the order of its packets."""

    acks: list[AckName]


class RequestError(BaseModel):
    """Why the request as a whole (not a packet in it) was refused."""

    error: str


@dataclass
class _Refused(Exception):
    """A request refused before its packets reached `Ingest`: status, counted reason, error."""

    status: int
    reason: str
    error: str


def _binary_body(media_types: Sequence[str], what: str) -> dict[str, Any]:
    schema = {"type": "string", "format": "binary"}
    content = {media: {"schema": schema} for media in media_types}
    return {"requestBody": {"required": True, "description": what, "content": content}}


_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": RequestError, "description": "Empty body (or an undecodable batch)."},
    408: {"model": RequestError, "description": "The body did not arrive in time."},
    413: {"model": RequestError, "description": "Body (or batch) over the limit."},
    415: {"model": RequestError, "description": "Unsupported Content-Type."},
    503: {"model": PacketStatus, "description": "Not durable (overload, store down): retry."},
}


class _Readings:
    """The POST handlers: limits, counters and the hand-over to `Ingest`."""

    def __init__(self, ingest: PacketIntake, limits: HttpLimits) -> None:
        self.ingest = ingest
        self.limits = limits
        self.counts: Counter[str] = Counter()
        self.inflight = 0

    async def single(self, request: Request) -> Response:
        try:
            with self._slot():
                data = await self._body(request, SINGLE_TYPES, self.limits.max_packet)
                self.counts["packets"] += 1
                ack = await self.ingest.submit(Incoming(data, time.time(), _source(request)))
        except _Refused as refused:
            return self._refusal(refused)
        status = {Ack.ACCEPTED: 200, Ack.REJECTED: 422, Ack.RETRY: 503}[ack]
        return JSONResponse({"status": ack.name.lower()}, status, self._retry_after(status))

    async def batch(self, request: Request) -> Response:
        try:
            with self._slot():
                packets = self._decode(
                    await self._body(request, BATCH_TYPES, self.limits.max_batch_body)
                )
                self.counts["packets"] += len(packets)
                received, source = time.time(), _source(request)
                acks = await asyncio.gather(
                    *(self.ingest.submit(Incoming(p, received, source)) for p in packets)
                )
        except _Refused as refused:
            return self._refusal(refused)
        return JSONResponse({"acks": [ack.name.lower() for ack in acks]})

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        # Refuse before reading the body: an overloaded head-end should not spend more on it.
        self.counts["requests"] += 1
        if (
            self.inflight >= self.limits.max_inflight
            or self.ingest.pending() > self.limits.max_pending
        ):
            raise _Refused(503, "overload", "overloaded, retry later")
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    async def _body(self, request: Request, media_types: Sequence[str], cap: int) -> bytes:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media not in media_types:
            raise _Refused(415, "unsupported_media_type", f"Content-Type must be {media_types}")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:  # honest and too big: refuse unread
            raise _Refused(413, "oversized_frame", f"body over {cap} bytes")
        # Content-Length may be absent (chunked) or a lie: count what actually arrives.
        chunks: list[bytes] = []
        size = 0
        try:
            async with (
                asyncio.timeout(self.limits.body_timeout),
                contextlib.aclosing(request.stream()) as stream,
            ):
                async for chunk in stream:
                    size += len(chunk)
                    if size > cap:
                        raise _Refused(413, "oversized_frame", f"body over {cap} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise _Refused(408, "slow_peer", "body not received in time") from None
        except ClientDisconnect:
            raise _Refused(400, "peer_gone", "client disconnected") from None
        if not size:
            raise _Refused(400, "empty_frame", "empty body")
        return b"".join(chunks)

    def _decode(self, body: bytes) -> list[bytes]:
        try:
            items = cose.loads_strict(body)
        except cose.CoseFormatError:
            raise _Refused(400, "malformed_batch", "body is not one CBOR item") from None
        if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
            raise _Refused(400, "malformed_batch", "body must be a CBOR array of byte strings")
        if len(items) > self.limits.max_batch:
            raise _Refused(413, "oversized_batch", f"more than {self.limits.max_batch} packets")
        return items

    def _refusal(self, refused: _Refused) -> Response:
        self.counts[refused.reason] += 1
        if refused.status == 503:
            return JSONResponse({"status": "retry"}, 503, self._retry_after(503))
        # A slow peer's connection is not worth keeping. The unread rest of an oversized body
        # is discarded instead (closing now would reset the socket before the peer reads the
        # 413); the head deadline bounds how long that may take.
        close = {"Connection": "close"} if refused.status == 408 else None
        return JSONResponse({"error": refused.error}, refused.status, close)

    def _retry_after(self, status: int) -> dict[str, str] | None:
        return {"Retry-After": str(self.limits.retry_after)} if status == 503 else None


def _source(request: Request) -> str:
    client = request.client
    return f"http:{client.host}:{client.port}" if client else "http"


def service_app(
    title: str, description: str, counts: Counter[str], counters: Callable[[], dict[str, Any]]
) -> FastAPI:
    """The service skeleton: OpenAPI, /healthz, /v1/counters (`counters()`), `state.counts`."""
    app = FastAPI(title=title, version="1", description=description)
    app.state.counts = counts  # `HttpServer` adds its connection-level refusals here

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/counters", summary="Service counters")
    async def service_counters() -> dict[str, Any]:
        return counters()

    return app


def create_app(ingest: PacketIntake, limits: HttpLimits | None = None) -> FastAPI:
    """The HTTP API of the head-end's receiving side; counters live on `app.state.counts`."""
    limits = limits or HttpLimits()
    readings = _Readings(ingest, limits)

    def counters() -> dict[str, Any]:
        # No stage reasons here: on the senders' port they would tell why a packet was refused.
        return {
            "receiver": dict(readings.counts),
            "ingest": dict(ingest.counts),
            "pending": ingest.pending(),
            "inflight": readings.inflight,
        }

    app = service_app(
        "meterseal head-end",
        "Receives sealed smart-meter readings. Holds no key: an ack means durable.",
        readings.counts,
        counters,
    )
    app.state.ingest = ingest
    app.state.limits = limits
    app.post(
        "/v1/readings",
        summary="Submit one sealed packet",
        description="200 once durable (also for a duplicate), 422 if refused, 503 to retry.",
        responses={
            200: {"model": PacketStatus, "description": "Durable."},
            422: {"model": PacketStatus, "description": "Refused for good: do not resend."},
            **_REFUSALS,
        },
        openapi_extra=_binary_body(SINGLE_TYPES, "One sealed packet (COSE)."),
    )(readings.single)
    app.post(
        "/v1/readings/batch",
        summary="Submit a batch of sealed packets",
        description=f"A CBOR array of at most {limits.max_batch} packets; one ack each, in order.",
        responses={200: {"model": BatchAcks, "description": "One ack per packet."}, **_REFUSALS},
        openapi_extra=_binary_body(BATCH_TYPES, "A CBOR array of byte strings."),
    )(readings.batch)
    return app


def _head_deadline(timeout: float, counts: Counter[str]) -> type[H11Protocol]:
    class HeadDeadline(H11Protocol):
        """h11 whose peer must send each request head in time (uvicorn waits forever)."""

        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._watch()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
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
                idle = self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]
                counts["idle_timeout" if idle else "slow_peer"] += 1
                self.transport.close()

        def _cancel(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

    return HeadDeadline


class HttpServer:
    """A skeleton app (`service_app`) served by uvicorn in the current event loop."""

    def __init__(self, app: FastAPI, limits: HttpLimits | None = None) -> None:
        self.app = app
        self.limits = limits or HttpLimits()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def counts(self) -> Counter[str]:
        """What the service refused or dropped, by reason; plus what it counts itself."""
        counts: Counter[str] = self.app.state.counts
        return counts

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port."""
        # Bind here: uvicorn turns a bind failure into sys.exit, which would end the event loop.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=4096)
        config = uvicorn.Config(
            self.app,
            http=_head_deadline(self.limits.head_timeout, self.counts),
            lifespan="off",
            log_config=None,  # leave the embedding process's logging alone
            access_log=False,  # one line per reading is noise; counters tell the story
            proxy_headers=False,  # `source` is the real peer unless a proxy is configured
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
                raise OSError("HTTP receiver stopped during startup")
            await asyncio.sleep(0.005)
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (up to shutdown_timeout), close."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


class HttpReceiver(HttpServer):
    """The HTTP API served by uvicorn in the current event loop, feeding `Ingest`."""

    def __init__(self, ingest: PacketIntake, limits: HttpLimits | None = None) -> None:
        limits = limits or HttpLimits()
        super().__init__(create_app(ingest, limits), limits)
        self.ingest = ingest


class HttpLink:
    """A `MeterLink` over HTTP with pooled connections; close it with `aclose()`."""

    def __init__(self, base_url: str, *, max_batch: int = 256, max_connections: int = 100) -> None:
        self.max_batch = max_batch
        self._client = httpx.AsyncClient(
            base_url=base_url,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    async def __aenter__(self) -> HttpLink:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        """POST the packets (batches of at most max_batch); their acks in order."""
        acks: list[Ack] = []
        # Translate httpx's errors here: the MeterLink contract is OSError or TimeoutError.
        try:
            async with asyncio.timeout(timeout):
                for start in range(0, len(packets), self.max_batch):
                    acks += await self._post(packets[start : start + self.max_batch], timeout)
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"HTTP timeout: {exc}") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise ConnectionError(f"HTTP connection failed: {exc}") from exc
        return acks

    async def _post(self, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        single = len(packets) == 1
        response = await self._client.post(
            "/v1/readings" if single else "/v1/readings/batch",
            content=packets[0] if single else cose.dumps(list(packets)),
            headers={"Content-Type": SINGLE_TYPES[0] if single else BATCH_TYPES[0]},
            timeout=timeout,
        )
        status = response.status_code
        if status == 200:
            return [Ack.ACCEPTED] if single else _batch_acks(response, len(packets))
        if status in (408, 429) or status >= 500:
            return [Ack.RETRY] * len(packets)
        if single and status in (400, 413, 422):  # empty, too big or unopenable: final
            return [Ack.REJECTED]
        if status == 413:  # the head-end takes smaller batches: halve
            half = len(packets) // 2
            first = await self._post(packets[:half], timeout)
            return first + await self._post(packets[half:], timeout)
        # Anything else (404, 415, ...) is a misconfiguration: keep the packets, do not drop.
        raise ConnectionError(f"unexpected HTTP {status} from {response.url}")


def _batch_acks(response: httpx.Response, count: int) -> list[Ack]:
    try:
        names = response.json()["acks"]
        acks = [_ACKS[name] for name in names]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConnectionError(f"malformed batch response from {response.url}") from exc
    if len(acks) != count:
        raise ConnectionError(f"{len(acks)} acks for {count} packets from {response.url}")
    return acks
