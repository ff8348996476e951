"""HTTP receiver and meter side: POST sealed packets, one ack per packet once it is durable.

`POST /v1/readings` carries one packet (application/cose), `POST /v1/readings/batch` a CBOR
array of packets (application/cbor). Like the TCP receiver it holds no key: it moves bytes to
`Ingest` and answers once each packet is durable or refused, never saying why it was refused.

The app and its server are the runtime's (`meterseal.runtime.http`): /healthz, counters,
OpenAPI and the connection limits are those of every other HTTP service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from meterseal.acquisition.ingest import Ack, PacketIntake
from meterseal.acquisition.stages import Incoming
from meterseal.crypto import cose
from meterseal.crypto.packet import MAX_PACKET_BYTES
from meterseal.runtime.auth import PROVEN_BY_BODY, access
from meterseal.runtime.connections import source_key
from meterseal.runtime.http import HttpServer, ServerLimits, service_app

SINGLE_TYPES = ("application/cose", "application/octet-stream")
BATCH_TYPES = ("application/cbor",)
_CBOR_HEAD = 9  # longest CBOR item head: what framing may add per packet and for the array
_ACKS = {ack.name.lower(): ack for ack in Ack}

AckName = Literal["accepted", "rejected", "retry"]


@dataclass(frozen=True)
class HttpLimits(ServerLimits):
    """Caps that keep one peer from hurting the others (plus the server's connection caps)."""

    max_packet: int = MAX_PACKET_BYTES
    max_batch: int = 256
    max_inflight: int = 256  # requests being read or awaiting acks; beyond this: 503
    max_inflight_per_source: int = 64  # of those, from one source; beyond this: 429
    max_pending: int = 10_000  # packets queued in Ingest; beyond this: 503
    body_timeout: float = 10.0  # a request body must be complete within this
    body_grace: float = 1.0  # seconds before the body must keep up min_body_rate
    min_body_rate: int = 32 * 1024  # bytes/s a body must average after body_grace, else 408
    max_buffered: int = 64 * 2**20  # body bytes held by all requests at once; beyond: 503
    retry_after: int = 1  # seconds, sent with every 503 and 429

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
class _Slot:
    """One request's place among those in flight: its source and the body bytes it holds."""

    source: str
    buffered: int = 0


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
    429: {"model": PacketStatus, "description": "Too many requests from this source: retry."},
    503: {"model": PacketStatus, "description": "Not durable (overload, store down): retry."},
}


class _Readings:
    """The POST handlers: limits, counters and the hand-over to `Ingest`."""

    def __init__(self, ingest: PacketIntake, limits: HttpLimits) -> None:
        self.ingest = ingest
        self.limits = limits
        self.counts: Counter[str] = Counter()
        self.inflight = 0
        self.buffered = 0  # body bytes held by the requests in flight
        self._by_source: Counter[str] = Counter()

    async def single(self, request: Request) -> Response:
        try:
            with self._slot(request) as slot:
                data = await self._body(request, SINGLE_TYPES, self.limits.max_packet, slot)
                self.counts["packets"] += 1
                ack = await self.ingest.submit(Incoming(data, time.time(), _source(request)))
        except _Refused as refused:
            return self._refusal(refused)
        status = {Ack.ACCEPTED: 200, Ack.REJECTED: 422, Ack.RETRY: 503}[ack]
        return JSONResponse({"status": ack.name.lower()}, status, self._retry_after(status))

    async def batch(self, request: Request) -> Response:
        try:
            with self._slot(request) as slot:
                body = await self._body(request, BATCH_TYPES, self.limits.max_batch_body, slot)
                packets = self._decode(body)
                del body  # the packets are copies: let the body go before the acks come
                self.counts["packets"] += len(packets)
                received, source = time.time(), _source(request)
                acks = await asyncio.gather(
                    *(self.ingest.submit(Incoming(p, received, source)) for p in packets)
                )
        except _Refused as refused:
            return self._refusal(refused)
        return JSONResponse({"acks": [ack.name.lower() for ack in acks]})

    @contextlib.contextmanager
    def _slot(self, request: Request) -> Iterator[_Slot]:
        # Refuse before reading the body: an overloaded head-end should not spend more on it.
        self.counts["requests"] += 1
        limits = self.limits
        slot = _Slot(source_key(request.client.host) if request.client else "")
        if self.inflight >= limits.max_inflight or self.ingest.pending() > limits.max_pending:
            raise _Refused(503, "overload", "overloaded, retry later")
        if self._by_source[slot.source] >= limits.max_inflight_per_source:
            # One source (a slow sender, a flood) must not hold the slots other meters need.
            raise _Refused(429, "source_busy", "too many requests from this source")
        self.inflight += 1
        self._by_source[slot.source] += 1
        try:
            yield slot
        finally:
            self.inflight -= 1
            self.buffered -= slot.buffered
            self._by_source[slot.source] -= 1
            if not self._by_source[slot.source]:
                del self._by_source[slot.source]

    def _hold(self, slot: _Slot, size: int) -> None:
        if self.buffered + size > self.limits.max_buffered:
            raise _Refused(503, "buffers_full", "overloaded, retry later")
        self.buffered += size
        slot.buffered += size

    async def _body(
        self, request: Request, media_types: Sequence[str], cap: int, slot: _Slot
    ) -> bytes:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media not in media_types:
            raise _Refused(415, "unsupported_media_type", f"Content-Type must be {media_types}")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:  # honest and too big: refuse unread
            raise _Refused(413, "oversized_frame", f"body over {cap} bytes")
        # Content-Length may be absent (chunked) or a lie: count what actually arrives.
        chunks: list[bytes] = []
        size = 0
        limits = self.limits
        began = asyncio.get_running_loop().time()
        ceiling = began + limits.body_timeout

        def deadline() -> float:  # the body must keep up min_body_rate after the grace
            return min(ceiling, began + limits.body_grace + size / limits.min_body_rate)

        try:
            async with (
                asyncio.timeout_at(deadline()) as timer,
                contextlib.aclosing(request.stream()) as stream,
            ):
                async for chunk in stream:
                    size += len(chunk)
                    if size > cap:
                        raise _Refused(413, "oversized_frame", f"body over {cap} bytes")
                    self._hold(slot, len(chunk))
                    chunks.append(chunk)
                    timer.reschedule(deadline())
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
        if refused.status in (429, 503):
            return JSONResponse({"status": "retry"}, refused.status, self._retry_after(503))
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
            "buffered_bytes": readings.buffered,
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
        dependencies=[access(PROVEN_BY_BODY)],  # a packet's signature says who sent it
    )(readings.single)
    app.post(
        "/v1/readings/batch",
        summary="Submit a batch of sealed packets",
        description=f"A CBOR array of at most {limits.max_batch} packets; one ack each, in order.",
        responses={200: {"model": BatchAcks, "description": "One ack per packet."}, **_REFUSALS},
        openapi_extra=_binary_body(BATCH_TYPES, "A CBOR array of byte strings."),
        dependencies=[access(PROVEN_BY_BODY)],
    )(readings.batch)
    return app


class HttpReceiver(HttpServer):
    """The HTTP API served by uvicorn in the current event loop, feeding `Ingest`."""

    def __init__(
        self,
        ingest: PacketIntake,
        limits: HttpLimits | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        limits = limits or HttpLimits()
        super().__init__(create_app(ingest, limits), limits, tls)
        self.ingest = ingest


class HttpLink:
    """A `MeterLink` over HTTP with pooled connections; close it with `aclose()`."""

    def __init__(
        self,
        base_url: str,
        *,
        max_batch: int = 256,
        max_connections: int = 100,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        self.max_batch = max_batch
        self._client = httpx.AsyncClient(
            base_url=base_url,
            verify=verify or True,  # https://: the head-end's certificate, from the deployment CA
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
