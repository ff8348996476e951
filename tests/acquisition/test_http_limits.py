"""HTTP limits: slow bodies and floods from one source do not take the slots other meters need.

The attacker is 127.0.0.1, the good meter 127.0.0.7. The attacker's requests are raw sockets
that announce a 2 MB batch and send ten bytes of it.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from meterseal.acquisition.http import BATCH_TYPES, SINGLE_TYPES, HttpLimits
from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.tcp import open_frames
from meterseal.crypto import cose
from tests.acquisition.conftest import p256_packets
from tests.acquisition.test_http import _serve
from tests.acquisition.test_tcp_limits import GOOD, _close, _until
from tests.conftest import World

SLOW_HEAD = (
    b"POST /v1/readings/batch HTTP/1.1\r\nHost: head-end\r\n"
    b"Content-Type: application/cbor\r\nContent-Length: 2000000\r\n\r\n"
)


async def _slow_bodies(port: int, count: int, first: bytes) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await open_frames("127.0.0.1", port, source="127.0.0.1")
        writer.write(SLOW_HEAD + first)
        writers.append(writer)
    return writers


def test_slow_bodies_from_one_source_leave_a_good_meters_posts_accepted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    # Twelve slots in all: without the per-source cap the slow bodies would hold every one.
    limits = HttpLimits(
        max_per_source=16,
        max_inflight=12,
        max_inflight_per_source=8,
        body_grace=0.5,
        min_body_rate=1000,
    )

    async def scenario() -> None:
        sink = MemorySink()
        async with _serve(world, sink, limits) as (served, _):
            counts = served.receiver.counts
            slow = await _slow_bodies(served.port, 30, b"\x99" * 10)
            await _until(lambda: counts["refused_source_full"] == 14, "connections refused")
            meter = httpx.AsyncClient(
                base_url=served.url,
                transport=httpx.AsyncHTTPTransport(local_address=GOOD),
                timeout=10,
            )
            good = p256_packets(world, range(500, 540))
            async with meter:
                responses = [
                    await meter.post(
                        "/v1/readings/batch",
                        content=cose.dumps(good[i : i + 4]),
                        headers={"Content-Type": BATCH_TYPES[0]},
                    )
                    for i in range(0, len(good), 4)
                ]
            await _until(lambda: counts["slow_peer"] + counts["source_busy"] == 16, "cut off")
            _close(slow)
        assert [r.status_code for r in responses] == [200] * 10
        assert [a for r in responses for a in r.json()["acks"]] == ["accepted"] * len(good)
        assert len(sink.originals) == len(good)
        assert counts["slow_peer"] >= 8  # every slot a slow body took was taken back (408)
        assert counts["refused_source_full"] == 14
        assert served.receiver.gate is not None
        assert served.receiver.gate.held("127.0.0.1") == 0
        assert not caplog.records  # no tracebacks, no line per refusal

    asyncio.run(scenario())


def test_bodies_beyond_the_buffer_budget_are_refused_and_their_memory_released(
    world: World,
) -> None:
    limits = HttpLimits(max_buffered=200_000, body_grace=30, min_body_rate=1)

    async def scenario() -> None:
        sink = MemorySink()
        async with _serve(world, sink, limits) as (served, client):
            counts = served.receiver.counts
            slow = await _slow_bodies(served.port, 4, b"\x99" * 90_000)
            await _until(lambda: counts["buffers_full"] >= 2, "bodies refused for memory")
            held = (await client.get("/v1/counters")).json()["buffered_bytes"]
            assert held <= limits.max_buffered
            _close(slow)
            await _until(lambda: counts["peer_gone"] >= 2, "disconnects seen")
            acks = [
                (
                    await client.post(
                        "/v1/readings", content=p, headers={"Content-Type": SINGLE_TYPES[0]}
                    )
                )
                for p in p256_packets(world, range(600, 603))
            ]
            after = (await client.get("/v1/counters")).json()["buffered_bytes"]
        assert [r.json()["status"] for r in acks] == [Ack.ACCEPTED.name.lower()] * 3
        assert after == 0

    asyncio.run(scenario())
