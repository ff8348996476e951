"""TCP connection caps: one source's idle or slowloris flood does not starve the other meters.

The flood comes from 127.0.0.1, the good meters from 127.0.0.7. Where the process's open-file
limit matters, the receiver runs in a subprocess with a lowered RLIMIT_NOFILE and this process
is the attacker, so the attacker's sockets do not count against the receiver's limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
import sys
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.relay import Relay, RelayConfig
from meterseal.acquisition.stages import Incoming
from meterseal.acquisition.tcp import (
    TcpLimits,
    TcpLink,
    TcpReceiver,
    encode_frames,
    open_frames,
    send_frames,
)
from meterseal.meter.faults import Fault
from meterseal.meter.simulator import SimulationReport, send_meter
from meterseal.runtime.connections import (
    PROCESS,
    ConnectionCount,
    ConnectionGate,
    ConnectionLimits,
    connection_budget,
    source_key,
)
from tests.acquisition.conftest import p256_packets
from tests.acquisition.test_tcp import _serve, _stop
from tests.conftest import World

FLOOD = 100  # connections the attacker opens
PER_SOURCE = 32
GOOD = "127.0.0.7"
ROUNDS = 50  # bounded waits: at most this many short sleeps


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(ROUNDS * 10):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def _flood(port: int, count: int, source: str = "127.0.0.1") -> list[asyncio.StreamWriter]:
    """Open `count` connections; every other one starts a frame and never finishes it."""
    writers = []
    for i in range(count):
        try:
            _, writer = await open_frames("127.0.0.1", port, source=source)
        except OSError:
            continue
        if i % 2:
            writer.write(struct.pack(">I", 4000) + b"x")  # slowloris: a frame begun
        writers.append(writer)
    return writers


def _close(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()


def test_gate_caps_each_source_and_the_total() -> None:
    counts: Counter[str] = Counter()
    gate = ConnectionGate(max_per_source=2, max_connections=3, counts=counts)
    assert [gate.admit("a"), gate.admit("a"), gate.admit("a")] == [
        None,
        None,
        "refused_source_full",
    ]
    assert gate.admit("b") is None
    assert gate.admit("c") == "refused_server_full"
    gate.release("a")
    assert gate.admit("c") is None
    assert gate.held("a") == 1
    assert gate.open == 3
    assert counts == {"refused_source_full": 1, "refused_server_full": 1}


def test_servers_left_at_the_default_share_the_process_budget() -> None:
    shared = ConnectionCount()
    tcp = ConnectionGate(10, 3, Counter(), shared)
    http = ConnectionGate(10, 3, Counter(), shared)
    assert [tcp.admit("a"), tcp.admit("b"), http.admit("c")] == [None, None, None]
    assert http.admit("d") == "refused_server_full"
    tcp.release("a")
    assert http.admit("d") is None
    assert ConnectionLimits().gate(Counter()).shared is PROCESS
    assert ConnectionLimits(max_connections=5).gate(Counter()).shared is not PROCESS


def test_sources_and_the_budget() -> None:
    assert source_key("10.1.2.3") == "10.1.2.3"
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff") == "2001:db8::/64"
    assert source_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert connection_budget(20_000) == 17_500
    assert connection_budget(256) == 128
    assert connection_budget(64) == 1


def test_idle_and_slowloris_flood_from_one_source_leaves_other_meters_served(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "meterseal.runtime.connections")

    async def scenario() -> None:
        sink = MemorySink()
        limits = TcpLimits(max_per_source=PER_SOURCE)
        ingest, receiver, port = await _serve(world, sink, limits)
        flood = await _flood(port, FLOOD)
        refused = FLOOD - PER_SOURCE
        await _until(lambda: receiver.counts["refused_source_full"] == refused, "refusals")
        assert receiver.open_connections == PER_SOURCE
        link = TcpLink("127.0.0.1", port, source=GOOD)
        good = p256_packets(world, range(9000, 9040))
        report = SimulationReport()
        # Ten exchanges of four (a connection each), with a retry budget of one resend.
        wire = [(Fault.NONE, p) for p in good]
        await send_meter(link, "M-p256", wire, report, window=4, timeout=10, retries=1)
        _close(flood)
        await _stop(ingest, receiver)
        assert report.acks == {"accepted": len(good)}
        assert (report.unacknowledged, report.connection_errors, report.resent) == (0, 0, 0)
        assert len(sink.originals) == len(good)
        assert receiver.counts["refused_source_full"] == refused

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    counts = [re.search(r"refused (\d+) connections", line) for line in lines]
    assert all(counts), lines
    summed = sum(int(m[1]) for m in counts if m)
    assert summed == FLOOD - PER_SOURCE
    assert len(lines) < summed  # summaries, not a line per refusal


def test_relay_caps_meters_per_source() -> None:
    async def scenario() -> None:
        limits = TcpLimits(max_per_source=4)
        relay = Relay(RelayConfig(("127.0.0.1", 0), ("127.0.0.1", 9), 1, limits))
        port = await relay.start()
        flood = await _flood(port, 10)
        await _until(lambda: relay.counts["refused_source_full"] == 6, "refusals")
        assert relay.status().faults == {"refused_source_full": 6}
        await _until(lambda: relay.open == 4, "four meters held")
        _close(flood)
        await relay.stop()

    asyncio.run(scenario())


# The receiver in a subprocess with RLIMIT_NOFILE lowered; it accepts every frame (the
# intake is not under test here) and answers "counts" on stdin with its counters as JSON.
_RECEIVER = """
import asyncio, json, resource, sys
from collections import Counter
from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.tcp import TcpLimits, TcpReceiver

class Intake:
    counts = Counter()
    def enqueue(self, item):
        future = asyncio.get_running_loop().create_future()
        future.set_result(Ack.ACCEPTED)
        self.counts["packets"] += 1
        return future
    async def submit(self, item):
        return await self.enqueue(item)
    def pending(self):
        return 0

async def main(nofile, limits):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    receiver = TcpReceiver(Intake(), TcpLimits(**limits))
    print(await receiver.start(), flush=True)
    loop = asyncio.get_running_loop()
    while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip() == "counts":
        print(json.dumps({**receiver.counts, "open": receiver.open_connections}), flush=True)
    await receiver.stop()

asyncio.run(main(int(sys.argv[1]), json.loads(sys.argv[2])))
"""


Counts = Callable[[], Awaitable[dict[str, int]]]


async def _with_receiver(
    nofile: int, limits: dict[str, int], attack: Callable[[int, Counts], Awaitable[None]]
) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _RECEIVER,
        str(nofile),
        json.dumps(limits),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    async def counts() -> dict[str, int]:
        stdin.write(b"counts\n")
        await stdin.drain()
        return dict(json.loads(await stdout.readline()))

    try:
        port = int(await asyncio.wait_for(stdout.readline(), 30))
        await attack(port, counts)
        stdin.write(b"stop\n")
        await stdin.drain()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    return stderr.decode()


async def _good_meter_served(port: int) -> None:
    acks = await send_frames("127.0.0.1", port, [b"sealed"] * 3, 10, source=GOOD)
    assert acks == [Ack.ACCEPTED] * 3


def test_the_total_stays_under_the_open_file_limit() -> None:
    async def attack(port: int, counts: Counts) -> None:
        flood = []
        for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
            flood += await _flood(port, 40, source)
        seen: dict[str, int] = {}

        async def refused() -> bool:
            seen.update(await counts())
            return seen.get("refused_server_full", 0) + seen.get("open", 0) == 200

        for _ in range(ROUNDS):
            if await refused():
                break
            await asyncio.sleep(0.05)
        assert seen["open"] == connection_budget(256) == 128
        assert "accept_paused" not in seen  # never ran out of descriptors
        _close(flood)
        for _ in range(ROUNDS):  # the receiver sees the resets and frees the slots
            if not (await counts())["open"]:
                break
            await asyncio.sleep(0.05)
        await _good_meter_served(port)

    stderr = asyncio.run(_with_receiver(256, {}, attack))
    assert "Traceback" not in stderr


def test_out_of_descriptors_pauses_accepting_without_a_traceback_flood() -> None:
    async def attack(port: int, counts: Counts) -> None:
        flood = await _flood(port, 120)
        for _ in range(ROUNDS):
            if (await counts()).get("accept_paused"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("accepting never paused")
        _close(flood)
        await _good_meter_served(port)  # accepting resumes once descriptors are free

    # Caps above the limit on purpose: descriptors run out before any cap is reached.
    stderr = asyncio.run(_with_receiver(64, {"max_connections": 10_000}, attack))
    assert "Traceback" not in stderr
    assert stderr.count("\n") <= 5  # at most a summary line or two


class _HeldIntake:
    """An intake whose acks wait until released: what it holds is what the receiver let in."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.held: list[tuple[str, asyncio.Future[Ack]]] = []

    def enqueue(self, item: Incoming) -> asyncio.Future[Ack]:
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self.held.append((item.source, future))
        return future

    async def submit(self, item: Incoming) -> Ack:
        return await self.enqueue(item)

    def pending(self) -> int:
        return len(self.held)

    def from_source(self, prefix: str) -> int:
        return sum(source.startswith(prefix) for source, _ in self.held)

    def release(self) -> None:
        for _, future in self.held:
            if not future.done():
                future.set_result(Ack.ACCEPTED)


def test_one_source_cannot_fill_the_shared_ingest_queue() -> None:
    async def scenario() -> None:
        intake = _HeldIntake()
        receiver = TcpReceiver(intake, TcpLimits(max_unanswered_per_source=16))
        port = await receiver.start()
        flood = []
        for _ in range(4):  # four connections of twenty frames each, all from 127.0.0.1
            reader, writer = await open_frames("127.0.0.1", port, source="127.0.0.1")
            writer.write(encode_frames([b"frame"] * 20))
            flood.append((reader, writer))
        await _until(lambda: intake.from_source("tcp:127.0.0.1:") == 20, "one read let in")
        meter = asyncio.create_task(send_frames("127.0.0.1", port, [b"m"] * 3, 10, source=GOOD))
        await _until(lambda: intake.from_source(f"tcp:{GOOD}:") == 3, "the meter let in")
        assert intake.from_source("tcp:127.0.0.1:") == 20  # the other three wait their turn
        assert receiver.counts["source_share_full"] == 3
        for _ in range(ROUNDS):  # answer everything, as the ingest would
            intake.release()
            if intake.pending() == 83 and all(f.done() for _, f in intake.held):
                break
            await asyncio.sleep(0.02)
        assert await meter == [Ack.ACCEPTED] * 3
        assert [len(await r.readexactly(20)) for r, _ in flood] == [20] * 4
        _close([w for _, w in flood])
        await receiver.stop()

    asyncio.run(scenario())
