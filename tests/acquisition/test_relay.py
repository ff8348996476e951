"""TCP relay: two relay processes in front of a real head-end; acks routed back in order.

Each relay keeps one upstream connection, so the meters that land on a relay share it: the
acks of their interleaved frames must still reach each meter in its own frame order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from meterseal.acquisition.headend import HeadEnd, HeadEndSettings
from meterseal.acquisition.relay import AckRoute, RelayConfig, RelayStatus
from meterseal.acquisition.relay_pool import RelayPool
from meterseal.acquisition.tcp import encode_frames
from meterseal.crypto import certs, packet
from meterseal.crypto.suites import P256
from meterseal.deployment import TrustedMaterial
from meterseal.meter.provisioning import ProvisionedMeter, fleet_records, provision
from meterseal.model import Reading
from meterseal.storage import Store
from tests.conftest import NOW, World

T = NOW.timestamp()
ACCEPTED, REJECTED = 0, 1
JUNK = b"\x00junk"  # not a packet: REJECTED as malformed, an ack of its own kind
METERS = 6


def test_ack_route_pairs_replies_with_senders_in_order() -> None:
    route: AckRoute[str] = AckRoute()
    for sender in "aabca":
        route.sent(sender)
    assert route.answered(b"\x00\x01\x00") == [("a", b"\x00\x01"), ("b", b"\x00")]
    assert len(route) == 2
    with pytest.raises(ValueError, match="more replies"):
        route.answered(b"\x00\x00\x00")
    assert route.abandon() == ["c", "a"]
    assert len(route) == 0


class _HeadEndThread:
    """A real head-end (SQLite store) on an event loop of its own, behind the relays."""

    def __init__(self, material: TrustedMaterial, store: Store) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        settings = HeadEndSettings(tcp="127.0.0.1:0", registry_refresh=300)
        self.head = HeadEnd(material, store, settings, clock=lambda: T)

    def start(self) -> tuple[str, int]:
        self.thread.start()
        host, port = self.run(self.head.start())["tcp"].rsplit(":", 1)
        return host, int(port)

    def stop(self) -> None:
        self.run(self.head.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def receiver_counts(self) -> Counter[str]:
        async def snapshot() -> Counter[str]:
            return Counter(self.head.receivers["tcp"].counts)

        return self.run(snapshot())  # type: ignore[no-any-return]


class Relayed:
    """Meters, the head-end's store, the relays' port and their pool."""

    def __init__(self, meters: list[ProvisionedMeter], world: World, store: Store) -> None:
        self.meters, self.world, self.store = meters, world, store
        self.port = 0
        self.upstream = ("", 0)
        self.pool: RelayPool | None = None
        self.headend: _HeadEndThread | None = None

    def packets(self, index: int, counters: range) -> list[bytes]:
        """Meter `index`'s sealed readings with these counters."""
        key = self.meters[index].key
        return [
            packet.seal(
                Reading(key.meter_id, c, int(T) - 900, 900, c),
                key,
                self.world.headend.public(),
                P256,
                now=NOW,
                rng=os.urandom,
            )
            for c in counters
        ]

    def status(self) -> list[RelayStatus]:
        assert self.pool is not None
        return self.pool.status()

    def faults(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for status in self.status():
            total.update(status.faults)
        return total

    def stored(self) -> int:
        return self.store.counters().get("stored", 0)


@pytest.fixture(scope="module")
def relayed(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relayed]:
    """A head-end on SQLite, then two relay processes with one upstream connection each."""
    ca_key, ca_cert = certs.create_ca("relay CA", now=NOW, rng=os.urandom)
    meters = provision(ca_key, ca_cert, METERS, P256, now=NOW, prefix="RELAY", workers=1)
    path: Path = tmp_path_factory.mktemp("relay") / "relay.db"
    with Store.open(f"sqlite:///{path}") as store:
        store.register_meters(fleet_records(ca_cert, meters), now=NOW)
        fixture = Relayed(meters, world, store)
        headend = _HeadEndThread(TrustedMaterial(world.headend, ca_cert, b"r" * 32), store)
        fixture.upstream = upstream = headend.start()
        fixture.headend = headend
        pool = RelayPool(RelayConfig(("127.0.0.1", 0), upstream, upstreams=1), 2)
        try:
            fixture.port = pool.start()
            fixture.pool = pool
            yield fixture
        finally:
            pool.stop()
            headend.stop()


def _talk(port: int, chunks: list[bytes], pause: float = 0.003) -> bytes:
    """Send the chunks, half-close, and return every byte received until the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(pause)  # so that other meters' frames come in between upstream
        sock.shutdown(socket.SHUT_WR)
        replies = b""
        while data := sock.recv(4096):
            replies += data
        return replies


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_meters_sharing_an_upstream_get_their_own_acks_in_order(relayed: Relayed) -> None:
    # Each meter has its own pattern of good and junk frames, so a misrouted or reordered
    # ack shows; meter 0 sends more than a window (64) so it must wait for upstream slots.
    counts = [150, 9, 12, 7, 10, 8]
    scripts: list[tuple[list[bytes], bytes]] = []
    for index, count in enumerate(counts):
        good = relayed.packets(index, range(1, count + 1))
        frames = [JUNK if i % (index + 2) == 1 else data for i, data in enumerate(good)]
        expected = bytes(REJECTED if f is JUNK else ACCEPTED for f in frames)
        chunks = [encode_frames(frames[i : i + 3]) for i in range(0, len(frames), 3)]
        scripts.append((chunks, expected))
    before = relayed.stored()
    with ThreadPoolExecutor(len(scripts)) as pool:
        replies = list(pool.map(lambda s: _talk(relayed.port, s[0]), scripts))
    assert replies == [expected for _, expected in scripts]
    accepted = sum(expected.count(ACCEPTED) for _, expected in scripts)
    assert relayed.stored() - before == accepted
    statuses = relayed.status()
    # one upstream connection per relay that served meters, shared by all of them (the kernel
    # may hand every meter to one relay: how many relays served is not ours to assert)
    for status in statuses:
        assert status.counts.get("upstream_connects", 0) == min(1, status.counts.get("meters", 0))
    assert sum(status.counts.get("meters", 0) for status in statuses) >= len(counts)
    assert relayed.faults() == Counter()


def test_the_kernel_spreads_meters_over_the_relays(relayed: Relayed) -> None:
    idle = [socket.create_connection(("127.0.0.1", relayed.port)) for _ in range(32)]
    try:
        _eventually(lambda: sum(s.open for s in relayed.status()) == len(idle))
        assert all(s.open > 0 for s in relayed.status())  # all on one: p = 2**-31
    finally:
        for sock in idle:
            sock.close()
    assert relayed.faults() == Counter()
    _eventually(lambda: sum(s.open for s in relayed.status()) == 0)


def test_a_meter_gone_mid_flight_does_not_disturb_the_others(relayed: Relayed) -> None:
    leaving = encode_frames(relayed.packets(1, range(1000, 1060)))
    staying = [encode_frames(relayed.packets(2, range(1000 + i, 1000 + i + 5))) for i in (0, 5)]
    before = relayed.stored()

    def leave() -> None:
        sock = socket.create_connection(("127.0.0.1", relayed.port), timeout=10)
        sock.sendall(leaving)
        # Reset at once: its frames are in flight upstream, their acks have nowhere to go.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    with ThreadPoolExecutor(2) as pool:
        gone = pool.submit(leave)
        stays = pool.submit(_talk, relayed.port, staying, 0.02)
        gone.result()
        assert stays.result() == bytes([ACCEPTED] * 10)
    _eventually(lambda: sum(s.open for s in relayed.status()) == 0)
    faults = relayed.faults()
    assert faults, "the leaver left a trace"
    assert faults.keys() <= {"ack_dropped", "connection_lost", "peer_gone"}, faults
    assert 10 <= relayed.stored() - before <= 70  # whatever of the leaver's got through
    # The relays and their upstream connections keep serving.
    assert _talk(relayed.port, [encode_frames(relayed.packets(3, range(2000, 2003)))]) == bytes(3)
    assert relayed.headend is not None
    assert relayed.headend.receiver_counts().keys() == {"connections"}


def test_an_oversized_frame_cuts_only_its_meter(relayed: Relayed) -> None:
    good = relayed.packets(4, range(3000, 3003))
    oversized = struct.pack(">I", packet.MAX_PACKET_BYTES + 1) + b"x" * 16
    before = relayed.faults()["oversized_frame"]
    with ThreadPoolExecutor(2) as pool:
        cut = pool.submit(_talk, relayed.port, [encode_frames(good) + oversized])
        other = pool.submit(
            _talk, relayed.port, [encode_frames(relayed.packets(5, range(3000, 3004)))]
        )
        assert cut.result() == bytes(3)  # its frames before the bad length, then the close
        assert other.result() == bytes(4)
    assert relayed.faults()["oversized_frame"] == before + 1
    assert _talk(relayed.port, [encode_frames(relayed.packets(4, range(3003, 3005)))]) == bytes(2)


def test_the_relay_command_serves_until_interrupted(relayed: Relayed) -> None:
    host, port = relayed.upstream
    command = [sys.executable, "-m", "meterseal", "relay", "--listen", "127.0.0.1:0"]
    command += ["--upstream", f"{host}:{port}", "--processes", "2", "--status-every", "0.2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        listening = process.stdout.readline().split()  # ["listening", "relay", "HOST:PORT"]
        assert listening[:2] == ["listening", "relay"], listening
        relay_port = int(listening[2].rsplit(":", 1)[1])
        frames = encode_frames(relayed.packets(0, range(4000, 4005)))
        assert _talk(relay_port, [frames]) == bytes(5)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    # The summary after SIGINT: one meter, five frames and acks, nothing else.
    assert "1 so far, 5 frames, 5 acks; faults: none" in " ".join(output.split())
