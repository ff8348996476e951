"""TCP receiver + ingest: acks only after the sink committed, bad input counted, good data kept."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from collections.abc import Callable

import pytest

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.stages import Incoming, TrustedStages
from meterseal.acquisition.tcp import (
    FrameParser,
    TcpLimits,
    TcpLink,
    TcpReceiver,
    encode_frames,
    send_frames,
)
from meterseal.runtime.address import format_address, parse_address
from tests.acquisition.conftest import p256_packets
from tests.conftest import NOW, World

T = NOW.timestamp()


async def _serve(
    world: World, sink: MemorySink, limits: TcpLimits | None = None
) -> tuple[Ingest, TcpReceiver, int]:
    stages = TrustedStages(world.headend, world.registry, Anonymizer(b"z" * 32))
    ingest = Ingest(stages, sink, clock=lambda: T)
    await ingest.start()
    receiver = TcpReceiver(ingest, limits or TcpLimits())
    return ingest, receiver, await receiver.start()


async def _stop(ingest: Ingest, receiver: TcpReceiver) -> None:
    await receiver.stop()
    await ingest.stop()


def test_packets_are_acked_in_order_after_storage(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        ingest, receiver, port = await _serve(world, sink)
        good = p256_packets(world, range(1000, 1040))
        acks = await send_frames("127.0.0.1", port, [*good[:20], b"\x00junk", *good[20:], good[0]])
        await _stop(ingest, receiver)
        assert acks == [Ack.ACCEPTED] * 20 + [Ack.REJECTED] + [Ack.ACCEPTED] * 21
        assert len(sink.originals) == 40
        assert [r.reason for r in sink.quarantine] == ["malformed"]
        assert ingest.stages.counts["duplicate"] == 1

    asyncio.run(scenario())


def _has_ipv6() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_the_receiver_listens_and_acks_on_ipv6(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        stages = TrustedStages(world.headend, world.registry, Anonymizer(b"z" * 32))
        ingest = Ingest(stages, sink, clock=lambda: T)
        await ingest.start()
        receiver = TcpReceiver(ingest, TcpLimits())
        host, _ = parse_address("[::1]:0", 7400)  # as `serve --tcp [::1]:0` gives it
        port = await receiver.start(host, 0)
        endpoint = format_address(host, port)  # what the head-end announces
        assert endpoint == f"[::1]:{port}"
        acks = await send_frames(*parse_address(endpoint, 7400), p256_packets(world, range(1, 4)))
        await _stop(ingest, receiver)
        assert acks == [Ack.ACCEPTED] * 3
        assert len(sink.originals) == 3

    asyncio.run(scenario())


def test_same_counter_other_content_is_rejected_and_quarantined(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        ingest, receiver, port = await _serve(world, sink)
        first = p256_packets(world, range(2000, 2001), energy=7)
        forged = p256_packets(world, range(2000, 2001), energy=9999)
        acks = await send_frames("127.0.0.1", port, first + forged)
        await _stop(ingest, receiver)
        assert acks == [Ack.ACCEPTED, Ack.REJECTED]
        assert ingest.stages.counts["replayed_counter"] == 1

    asyncio.run(scenario())


def test_store_failure_means_retry_not_ack(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        sink.fail = True
        ingest, receiver, port = await _serve(world, sink)
        acks = await send_frames("127.0.0.1", port, p256_packets(world, range(3000, 3003)))
        sink.fail = False
        again = await send_frames("127.0.0.1", port, p256_packets(world, range(3000, 3003)))
        await _stop(ingest, receiver)
        assert acks == [Ack.RETRY] * 3
        assert again == [Ack.ACCEPTED] * 3
        assert len(sink.originals) == 3

    asyncio.run(scenario())


class _HeldIntake:
    """An intake whose acks the test decides, one future per packet in arrival order."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.futures: list[asyncio.Future[Ack]] = []

    def enqueue(self, item: Incoming) -> asyncio.Future[Ack]:
        self.futures.append(asyncio.get_running_loop().create_future())
        return self.futures[-1]

    async def submit(self, item: Incoming) -> Ack:
        return await self.enqueue(item)

    def pending(self) -> int:
        return 0


def test_a_connection_is_not_read_beyond_its_unanswered_frames(world: World) -> None:
    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        intake = _HeldIntake()
        receiver = TcpReceiver(intake, TcpLimits(max_inflight=2))
        port = await receiver.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frames(p256_packets(world, range(4000, 4005))))
        await until(lambda: len(intake.futures) == 2)
        await asyncio.sleep(0.2)  # time to read more, were the line not full
        assert len(intake.futures) == 2
        intake.futures[1].set_result(Ack.REJECTED)  # decided, but behind an unanswered one
        await asyncio.sleep(0.05)
        assert len(intake.futures) == 2
        intake.futures[0].set_result(Ack.ACCEPTED)
        assert await reader.readexactly(2) == bytes([0, 1])  # both at once, in frame order
        await until(lambda: len(intake.futures) == 4)
        for future in intake.futures[2:]:
            future.set_result(Ack.RETRY)
        await until(lambda: len(intake.futures) == 5)
        intake.futures[4].set_result(Ack.ACCEPTED)
        assert await reader.readexactly(3) == bytes([2, 2, 0])
        writer.close()
        await receiver.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("frame", "counter"),
    [
        (struct.pack(">I", 10**6), "oversized_frame"),
        (struct.pack(">I", 0), "empty_frame"),
        (struct.pack(">I", 100) + b"short", "truncated_frame"),
    ],
)
def test_bad_frames_close_only_their_connection(world: World, frame: bytes, counter: str) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        ingest, receiver, port = await _serve(world, sink)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame)
        writer.write_eof()
        assert await reader.read() == b""  # closed without a reply
        writer.close()
        acks = await send_frames("127.0.0.1", port, p256_packets(world, range(4000, 4005)))
        await _stop(ingest, receiver)
        assert receiver.counts[counter] == 1
        assert acks == [Ack.ACCEPTED] * 5

    asyncio.run(scenario())


def test_slow_peer_is_timed_out(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        ingest, receiver, port = await _serve(world, sink, TcpLimits(frame_timeout=0.2))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(struct.pack(">I", 200) + b"x" * 10)  # then nothing
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await _stop(ingest, receiver)
        assert receiver.counts["slow_peer"] == 1

    asyncio.run(scenario())


def test_frame_parser_takes_frames_across_reads_and_stops_at_a_bad_length() -> None:
    parser = FrameParser(max_frame=8)
    stream = encode_frames([b"ab", b"cdefgh", b"i"])
    assert parser.feed(stream[:3]) == []
    assert parser.partial
    assert parser.feed(stream[3:16]) == [b"ab", b"cdefgh"]
    assert parser.feed(stream[16:] + struct.pack(">I", 9) + b"x") == [b"i"]
    assert parser.fault == "oversized_frame"
    assert not parser.partial
    assert parser.feed(encode_frames([b"late"])) == []


def test_a_link_sends_from_its_source_address(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        ingest, receiver, port = await _serve(world, sink)
        link = TcpLink("127.0.0.1", port, source="127.0.0.7")
        acks = await link.exchange("M-p256", [b"\x00junk"], 5)
        await _stop(ingest, receiver)
        assert acks == [Ack.REJECTED]
        assert sink.quarantine[0].source.startswith("tcp:127.0.0.7:")

    asyncio.run(scenario())
