"""HTTP receiver + ingest: acks only once durable, bad input refused and counted, good data kept."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import cbor2
import httpx
import pytest

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.http import HttpLimits, HttpLink, HttpReceiver
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.records import AcceptedReading, Rejection, StoreOutcome
from meterseal.acquisition.stages import TrustedStages
from meterseal.crypto.packet import MAX_PACKET_BYTES
from meterseal.crypto.suites import P256
from meterseal.meter.faults import FaultPlan
from meterseal.meter.provisioning import provision, register_fleet
from meterseal.meter.simulator import run_fleet, seal_meter
from meterseal.model import Reading
from meterseal.runtime.auth import check_access, route_rules
from tests.acquisition.conftest import p256_packets
from tests.conftest import NOW, World

T = NOW.timestamp()
COSE = {"Content-Type": "application/cose"}
CBOR = {"Content-Type": "application/cbor"}


class _Served:
    """A receiver on 127.0.0.1 with its ingest, and an httpx client for it."""

    def __init__(self, world: World, sink: MemorySink, limits: HttpLimits) -> None:
        stages = TrustedStages(world.headend, world.registry, Anonymizer(b"h" * 32))
        self.ingest = Ingest(stages, sink, clock=lambda: T)
        self.receiver = HttpReceiver(self.ingest, limits)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> tuple[_Served, httpx.AsyncClient]:
        await self.ingest.start()
        self.port = await self.receiver.start()
        self.client = httpx.AsyncClient(base_url=self.url, timeout=10)
        return self, self.client

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.aclose()
        await self.receiver.stop()
        await self.ingest.stop()


def _serve(world: World, sink: MemorySink, limits: HttpLimits | None = None) -> _Served:
    return _Served(world, sink, limits or HttpLimits())


async def _single(client: httpx.AsyncClient, data: bytes) -> httpx.Response:
    return await client.post("/v1/readings", content=data, headers=COSE)


async def _batch(client: httpx.AsyncClient, packets: Sequence[object]) -> httpx.Response:
    return await client.post("/v1/readings/batch", content=cbor2.dumps(packets), headers=CBOR)


def test_the_readings_routes_are_proven_by_their_packets(world: World) -> None:
    app = _serve(world, MemorySink()).receiver.app
    check_access(app)
    rules = route_rules(app)
    assert rules["POST /v1/readings"] == rules["POST /v1/readings/batch"] == ["proven-by-body"]
    assert rules["GET /healthz"] == rules["GET /v1/counters"] == ["public"]


def test_single_and_batch_are_acked_once_stored_and_duplicates_are_idempotent(
    world: World,
) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        good = p256_packets(world, range(100, 110))
        async with _serve(world, sink) as (served, client):
            first = await _single(client, good[0])
            assert (first.status_code, first.json()) == (200, {"status": "accepted"})
            octet = await client.post(
                "/v1/readings",
                content=good[1],
                headers={"Content-Type": "application/octet-stream"},
            )
            assert octet.status_code == 200
            batch = await _batch(client, good[2:7])
            assert (batch.status_code, batch.json()) == (200, {"acks": ["accepted"] * 5})
            async with HttpLink(served.url) as link:
                assert await link.exchange("m", good[7:], 5) == [Ack.ACCEPTED] * 3
                assert await link.exchange("m", good[:1], 5) == [Ack.ACCEPTED]
                assert await link.exchange("m", good[2:4], 5) == [Ack.ACCEPTED] * 2
            again = await _single(client, good[0])
            assert (again.status_code, again.json()) == (200, {"status": "accepted"})
            counters = (await client.get("/v1/counters")).json()
        assert len(sink.originals) == 10
        assert served.ingest.stages.counts["duplicate"] == 4
        assert counters["receiver"]["packets"] == 14
        assert counters["ingest"]["accepted"] == 14

    asyncio.run(scenario())


async def _chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_bad_input_is_refused_and_counted_and_good_data_still_stored(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        good = iter(p256_packets(world, range(200, 220)))
        async with _serve(world, sink, HttpLimits(max_batch=4)) as (served, client):

            async def accepted() -> None:
                response = await _single(client, next(good))
                assert response.json() == {"status": "accepted"}

            garbage = await _single(client, b"\x00junk")
            assert (garbage.status_code, garbage.json()) == (422, {"status": "rejected"})
            await accepted()
            mixed = await _batch(client, [next(good), b"\xd2junk", next(good)])
            assert mixed.json() == {"acks": ["accepted", "rejected", "accepted"]}
            assert (await _single(client, b"")).status_code == 400
            await accepted()
            big = b"\x00" * (MAX_PACKET_BYTES + 1)
            assert (await _single(client, big)).status_code == 413  # honest Content-Length
            await accepted()
            streamed = await client.post("/v1/readings", content=_chunks(big), headers=COSE)
            assert "content-length" not in streamed.request.headers  # sent chunked
            assert streamed.status_code == 413
            await accepted()
            for body in (b"\xff", cbor2.dumps({1: b"x"}), cbor2.dumps([b"x", 5]), b"\x80\x00"):
                response = await client.post("/v1/readings/batch", content=body, headers=CBOR)
                assert response.status_code == 400
                assert "error" in response.json()
                await accepted()
            assert (await _batch(client, [next(good)] * 5)).status_code == 413
            wrong_type = await client.post("/v1/readings", content=next(good))  # no Content-Type
            assert wrong_type.status_code == 415
            await accepted()
            assert (await client.get("/healthz")).json() == {"status": "ok"}
        counts = served.receiver.counts
        assert counts["empty_frame"] == 1
        assert counts["oversized_frame"] == 2
        assert counts["malformed_batch"] == 4
        assert counts["oversized_batch"] == 1
        assert counts["unsupported_media_type"] == 1
        assert served.ingest.stages.counts["malformed"] == 2
        assert sink.reasons() == ["malformed", "malformed"]
        assert len(sink.originals) == 11  # every good packet offered in an acceptable request

    asyncio.run(scenario())


def test_store_failure_means_retry_and_a_resend_is_accepted(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        sink.fail = True
        good = p256_packets(world, range(300, 303))
        async with _serve(world, sink) as (served, client):
            single = await _single(client, good[0])
            assert (single.status_code, single.json()) == (503, {"status": "retry"})
            assert single.headers["Retry-After"] == "1"
            batch = await _batch(client, good[1:])
            assert batch.json() == {"acks": ["retry", "retry"]}
            async with HttpLink(served.url) as link:
                assert await link.exchange("m", good[:1], 5) == [Ack.RETRY]
                sink.fail = False
                assert await link.exchange("m", good, 5) == [Ack.ACCEPTED] * 3
        assert len(sink.originals) == 3
        assert served.ingest.counts["store_unavailable"] == 4

    asyncio.run(scenario())


class _BlockingSink(MemorySink):
    """A store that holds each batch until released, to build up a queue in Ingest."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def save_batch(
        self, accepted: Sequence[AcceptedReading], rejected: Sequence[Rejection]
    ) -> list[StoreOutcome]:
        self.entered.set()
        self.release.wait(10)
        return super().save_batch(accepted, rejected)


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_overload_answers_503_with_retry_after_at_once(world: World) -> None:
    async def scenario() -> None:
        sink = _BlockingSink()
        good = p256_packets(world, range(400, 405))
        async with _serve(world, sink, HttpLimits(max_pending=0)) as (served, client):
            first = asyncio.create_task(_single(client, good[0]))
            await asyncio.to_thread(sink.entered.wait, 5)  # the store thread holds good[0]
            # good[1] goes through the stages and waits for the store; good[2] stays queued.
            second = asyncio.create_task(_single(client, good[1]))
            await _until(lambda: served.ingest.pending() == 0 and served.ingest.counts == {})
            await asyncio.sleep(0.1)
            third = asyncio.create_task(_single(client, good[2]))
            await _until(lambda: served.ingest.pending() == 1)
            refused = await _single(client, good[3])  # queue over max_pending
            assert (refused.status_code, refused.json()) == (503, {"status": "retry"})
            assert refused.headers["Retry-After"] == "1"
            # Refused at once, not after a wait: every request ahead of it is still unanswered.
            assert not any(task.done() for task in (first, second, third))
            sink.release.set()
            assert [(await t).status_code for t in (first, second, third)] == [200, 200, 200]
            assert (await _single(client, good[3])).status_code == 200
        assert served.receiver.counts["overload"] == 1
        assert len(sink.originals) == 4

    asyncio.run(scenario())


def test_too_many_requests_in_flight_is_overload(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        good = p256_packets(world, range(500, 501))
        async with _serve(world, sink, HttpLimits(max_inflight=1)) as (served, client):
            _, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"POST /v1/readings HTTP/1.1\r\nHost: x\r\n")
            writer.write(b"Content-Type: application/cose\r\nContent-Length: 100\r\n\r\nab")
            await writer.drain()  # holds the only slot while its body trickles
            await _until(lambda: served.receiver.counts["requests"] == 1)
            refused = await _single(client, good[0])
            assert refused.status_code == 503
            assert "Retry-After" in refused.headers
            writer.close()
            await _until(lambda: served.receiver.counts["peer_gone"] == 1)
            assert (await _single(client, good[0])).status_code == 200
        assert served.receiver.counts["overload"] == 1

    asyncio.run(scenario())


def test_a_body_that_stops_coming_gets_408_and_the_receiver_serves_on(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        good = p256_packets(world, range(600, 601))
        async with _serve(world, sink, HttpLimits(body_timeout=0.3)) as (served, client):
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"POST /v1/readings HTTP/1.1\r\nHost: x\r\n")
            writer.write(b"Content-Type: application/cose\r\nContent-Length: 1000\r\n\r\n")
            writer.write(b"x" * 10)  # then nothing
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(), 30)  # read() ends when server closes
            writer.close()
            assert reply.startswith(b"HTTP/1.1 408 ")
            assert (await _single(client, good[0])).status_code == 200
        assert served.receiver.counts["slow_peer"] == 1
        assert served.ingest.counts["accepted"] == 1  # the partial body never reached ingest
        assert len(sink.originals) == 1

    asyncio.run(scenario())


def test_a_request_head_must_arrive_in_time(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        async with _serve(world, sink, HttpLimits(head_timeout=0.3)) as (served, client):
            silent = await asyncio.open_connection("127.0.0.1", served.port)
            dripping = await asyncio.open_connection("127.0.0.1", served.port)
            head = b"POST /v1/readings HTTP/1.1\r\nHost: x\r\n"
            written = 0
            for byte in head:  # one byte per 100 ms: bytes keep coming, the head never does
                if dripping[0].at_eof():
                    break
                dripping[1].write(bytes((byte,)))
                written += 1
                await asyncio.sleep(0.1)
            assert written < len(head)  # closed before the head was complete, not after
            for reader, writer in (silent, dripping):
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no reply
                writer.close()
            assert (await client.get("/healthz")).status_code == 200
        assert served.receiver.counts["idle_timeout"] == 1
        assert served.receiver.counts["slow_peer"] == 1

    asyncio.run(scenario())


def test_link_halves_refused_batches_and_raises_only_oserror_or_timeout(world: World) -> None:
    hung_up = asyncio.Event()

    async def silent_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, reads, never answers
        writer.close()
        hung_up.set()

    async def scenario() -> None:
        sink = MemorySink()
        good = p256_packets(world, range(700, 708))
        async with _serve(world, sink, HttpLimits(max_batch=3)) as (served, _client):
            async with HttpLink(served.url, max_batch=8) as link:
                assert await link.exchange("m", good, 5) == [Ack.ACCEPTED] * 8
            assert served.receiver.counts["oversized_batch"] >= 1
            async with HttpLink(served.url + "/nowhere") as link:
                with pytest.raises(OSError, match="404"):  # misrouted: keep, do not drop
                    await link.exchange("m", good[:1], 5)
        assert len(sink.originals) == 8
        async with HttpLink(served.url) as link:  # the receiver is gone
            with pytest.raises(ConnectionError):
                await link.exchange("m", good[:1], 5)
        server = await asyncio.start_server(silent_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with HttpLink(f"http://127.0.0.1:{port}") as link:
            with pytest.raises(TimeoutError):
                await link.exchange("m", good[:1], 0.2)
        await asyncio.wait_for(hung_up.wait(), 5)  # the link closed its connection
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())


def test_fleet_simulator_over_http_stores_every_reading(world: World) -> None:
    meters = provision(world.ca_key, world.ca_cert, 3, P256, now=NOW, prefix="HTTP", workers=1)
    register_fleet(world.registry, meters)
    start = int(T) - 40 * 900
    wire = {
        m.key.meter_id: seal_meter(
            m,
            [Reading(m.key.meter_id, c, start + c * 900, 900, 100 + c) for c in range(1, 18)],
            world.headend.public(),
            plan=FaultPlan(),
            seed=7,
            now=NOW,
        )
        for m in meters
    }

    async def scenario() -> tuple[MemorySink, int]:
        sink = MemorySink()
        async with _serve(world, sink) as (served, _client), HttpLink(served.url) as link:
            report = await run_fleet(wire, link, concurrency=3, window=8)
        return sink, report.connection_errors

    sink, errors = asyncio.run(scenario())
    assert errors == 0
    # 17 readings per meter in windows of 8: two batches, then one single POST.
    assert set(sink.originals) == {(m.key.meter_id, c) for m in meters for c in range(1, 18)}


def test_openapi_documents_both_post_endpoints(world: World) -> None:
    async def scenario() -> Any:
        async with _serve(world, MemorySink()) as (_served, client):
            response = await client.get("/openapi.json")
            assert response.status_code == 200
            return response.json()

    document = asyncio.run(scenario())
    assert (document["info"]["title"], document["info"]["version"]) == ("meterseal head-end", "1")
    single = document["paths"]["/v1/readings"]["post"]
    batch = document["paths"]["/v1/readings/batch"]["post"]
    assert single["summary"]
    assert batch["summary"]
    assert "application/cose" in single["requestBody"]["content"]
    assert "application/cbor" in batch["requestBody"]["content"]
    assert {"200", "422", "503"} <= set(single["responses"])
    assert {"200", "400", "413", "503"} <= set(batch["responses"])
