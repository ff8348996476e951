"""The bad-input corpus over a real TCP receiver: every bad packet refused for its own reason,
framing faults close only their connection, and good traffic keeps flowing throughout."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter

import pytest

from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.tcp import TcpLimits, TcpLink, TcpReceiver
from meterseal.errors import RejectReason
from tests.acquisition.corpus import (
    BadFrame,
    BadPacket,
    CorpusDeployment,
    bad_frames,
    good_packets,
    run_corpus,
)
from tests.conftest import NOW, World

T = NOW.timestamp()


async def _serve(
    deployment: CorpusDeployment, sink: MemorySink, limits: TcpLimits | None = None
) -> tuple[Ingest, TcpReceiver, TcpLink]:
    ingest = Ingest(deployment.stages(), sink, clock=lambda: T)
    await ingest.start()
    receiver = TcpReceiver(ingest, limits or TcpLimits())
    port = await receiver.start()
    return ingest, receiver, TcpLink("127.0.0.1", port)


async def _stop(ingest: Ingest, receiver: TcpReceiver) -> None:
    await receiver.stop()
    await ingest.stop()


def test_corpus_covers_every_stage_reason(corpus: list[BadPacket]) -> None:
    # OVERSIZED cannot cross TCP: the frame limit equals the packet limit (test_packet has it).
    assert {bad.expected_reason for bad in corpus} == {r.value for r in RejectReason} - {
        RejectReason.OVERSIZED.value
    }
    assert len({bad.label for bad in corpus}) == len(corpus)


def test_corpus_over_tcp_interleaved_with_good_traffic(
    deployment: CorpusDeployment, corpus: list[BadPacket], world: World
) -> None:
    registry_size = len(world.registry)

    async def scenario() -> None:
        sink = MemorySink()
        ingest, receiver, link = await _serve(deployment, sink)
        good = good_packets(deployment, range(1, len(corpus) + 2), now=NOW)
        run = await run_corpus(link, ingest, sink, deployment, corpus, good, now=NOW)
        # The receiver is still up and still stores good packets afterwards.
        after = good_packets(deployment, range(100, 103), now=NOW)
        late = await link.exchange(deployment.meters["good"].meter_id, after, 10)
        await _stop(ingest, receiver)
        assert late == [Ack.ACCEPTED] * 3
        assert run.bad_acks == {bad.label: Ack.REJECTED for bad in corpus}
        assert run.quarantined["truncated"] == "malformed"
        assert run.quarantined["revoked_meter"] == "revoked_meter"
        assert "same_counter_other_content" not in run.quarantined  # a store conflict
        assert len(sink.originals) == len(good) + 1 + 3  # good traffic, the replayed original
        # No bad packet disturbed the framing: only connections were counted.
        assert set(receiver.counts) == {"connections"}
        assert ingest.counts["rejected"] == len(corpus)

    asyncio.run(scenario())
    assert len(world.registry) == registry_size, "the corpus must not touch the World registry"


def test_corpus_in_small_exchanges(deployment: CorpusDeployment, corpus: list[BadPacket]) -> None:
    # The same verdicts when every exchange (connection) carries at most three packets.
    async def scenario() -> None:
        sink = MemorySink()
        ingest, receiver, link = await _serve(deployment, sink)
        good = good_packets(deployment, range(200, 200 + len(corpus) + 1), now=NOW)
        run = await run_corpus(link, ingest, sink, deployment, corpus, good, now=NOW, chunk=3)
        await _stop(ingest, receiver)
        assert set(run.bad_acks.values()) == {Ack.REJECTED}

    asyncio.run(scenario())


def test_run_corpus_catches_a_mislabelled_packet(
    deployment: CorpusDeployment, corpus: list[BadPacket]
) -> None:
    # The scenario's checks can fail: claim the revoked meter's packet is merely unknown.
    index = next(i for i, bad in enumerate(corpus) if bad.label == "revoked_meter")
    wrong = list(corpus)
    wrong[index] = dataclasses.replace(corpus[index], expected_reason="unknown_meter")

    async def scenario() -> None:
        sink = MemorySink()
        ingest, receiver, link = await _serve(deployment, sink)
        good = good_packets(deployment, range(300, 300 + len(corpus) + 1), now=NOW)
        try:
            with pytest.raises(AssertionError, match="revoked_meter"):
                await run_corpus(link, ingest, sink, deployment, wrong, good, now=NOW)
        finally:
            await _stop(ingest, receiver)

    asyncio.run(scenario())


async def _send_bad_frame(port: int, frame: BadFrame) -> bytes:
    """Write the frame's bytes on a fresh connection; everything read until the peer closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame.data)
        await writer.drain()
        if frame.half_close:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def test_bad_frames_close_only_their_connection_while_good_traffic_flows(
    deployment: CorpusDeployment,
) -> None:
    sender = deployment.meters["good"].meter_id
    good = good_packets(deployment, range(1000, 1060), now=NOW)
    batches = [good[i : i + 3] for i in range(0, len(good), 3)]

    async def scenario() -> None:
        sink = MemorySink()
        limits = TcpLimits(frame_timeout=0.3)
        ingest, receiver, link = await _serve(deployment, sink, limits)
        frames = bad_frames(good[0], max_frame=limits.max_frame)
        bad_done = asyncio.Event()
        overlapping = 0

        async def good_traffic() -> tuple[list[Ack], int]:
            nonlocal overlapping
            acks: list[Ack] = []
            rounds = 0
            for batch in itertools.cycle(batches):
                if bad_done.is_set() and rounds >= len(batches):
                    break
                acks += await link.exchange(sender, batch, 10)
                rounds += 1
                overlapping += not bad_done.is_set()
                await asyncio.sleep(0.005)
            return acks, rounds

        async def bad_traffic() -> list[bytes]:
            await asyncio.sleep(0.01)  # let the good connection get going first
            try:
                return list(await asyncio.gather(*(_send_bad_frame(link.port, f) for f in frames)))
            finally:
                bad_done.set()

        (good_acks, rounds), replies = await asyncio.gather(good_traffic(), bad_traffic())
        final = await link.exchange(sender, good[-3:], 10)
        await _stop(ingest, receiver)

        for frame, reply in zip(frames, replies, strict=True):
            assert reply == bytes(a.value for a in frame.acks), frame.label
        assert good_acks == [Ack.ACCEPTED] * len(good_acks)
        assert final == [Ack.ACCEPTED] * 3
        assert overlapping >= 2, "good traffic must run while the bad frames are open"
        counts = Counter(receiver.counts)
        assert counts.pop("connections") == len(frames) + rounds + 1
        assert counts == Counter(f.counter for f in frames)
        assert set(sink.originals) == {(sender, c) for c in range(1000, 1060)}
        assert sink.reasons() == []
        assert ingest.stages.counts["stored"] == len(good)

    asyncio.run(scenario())
