"""kill -9 of the head-end in the middle of a stream: after a restart nothing is lost or doubled.

The head-end runs as a real `meterseal serve` process on SQLite and on PostgreSQL. Meters
stream over TCP; the test kills the process with SIGKILL once part of the stream is stored,
starts a new one on the same database (each on an ephemeral port; the meters are pointed at
the new one), and lets the meters resend whatever was not acknowledged. Every reading ends up
stored exactly once, and every packet the first process acknowledged was durable before it
said so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.tcp import TcpLink
from meterseal.crypto import packet
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import P256
from meterseal.demo import register
from meterseal.deployment import init_deployment
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import provision, register_fleet
from meterseal.meter.simulator import SimulationReport, run_fleet
from meterseal.meter.workload import Workload, seal_workload
from meterseal.storage import Store
from tests.storage.conftest import cascadb_limit

METERS, INTERVALS = 40, 96


class RecordingLink:
    """A TcpLink (replaceable: the head-end moves) that remembers what was acknowledged ACCEPTED."""

    def __init__(self, link: TcpLink) -> None:
        self.link = link
        self.accepted: set[bytes] = set()

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        acks = await self.link.exchange(meter_id, packets, timeout)
        for data, ack in zip(packets, acks, strict=True):
            if ack is Ack.ACCEPTED:
                self.accepted.add(hashlib.sha256(data).digest())
        return acks


def _serve(deployment: Path, db_url: str) -> tuple[subprocess.Popen[str], TcpLink]:
    """A head-end process on an ephemeral port, and a link to where it listens."""
    command = [sys.executable, "-m", "meterseal", "serve", "-d", str(deployment)]
    command += ["--store", db_url, "--tcp", "127.0.0.1:0", "--status-every", "60"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy()
    )
    assert process.stdout is not None
    for line in process.stdout:  # wait for the endpoint line before sending
        if line.startswith("listening tcp "):
            host, port = line.split()[2].rsplit(":", 1)
            return process, TcpLink(host, int(port))
    raise AssertionError(f"head-end did not start (exit {process.wait()})")


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (the head-end's opening workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stored(db_url: str) -> int:
    with Store.open(db_url) as store:
        return store.counters().get("stored", 0)


def test_kill9_midstream_restart_loses_and_doubles_nothing(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cascadb_limit(
        request, db_url, "one process has a store in a directory (its flock); this test "
        "counts the stored readings from its own process while the head-end process writes",
    )  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    deployment = init_deployment(tmp_path / "deployment", now=now)
    meters = provision(deployment.ca_key, deployment.ca_cert, METERS, P256, now=now, workers=1)
    with Store.open(db_url) as store:
        register(store, deployment, meters)
    start = (int(now.timestamp()) // INTERVAL - INTERVALS) * INTERVAL
    work = Workload(meters, deployment.headend.public(), start, INTERVALS)
    wire = seal_workload(work, now=now)
    total = METERS * INTERVALS

    first, first_link = _serve(tmp_path / "deployment", db_url)
    link = RecordingLink(first_link)
    outcome: list[SimulationReport] = []
    sender = threading.Thread(
        target=lambda: outcome.append(
            asyncio.run(run_fleet(wire, link, concurrency=20, window=16, pace=0.05))
        )
    )
    sender.start()
    deadline = time.monotonic() + 60
    while _stored(db_url) < total // 4:
        assert time.monotonic() < deadline, "the stream never got going"
        time.sleep(0.05)
    workers = _children(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Its forked opening workers (holding the head-end keys) die with it.
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers):
        assert time.monotonic() < deadline, "workers outlived the killed head-end"
        time.sleep(0.05)
    acked_by_first = set(link.accepted)
    assert _stored(db_url) < total, "killed too late: the stream had already finished"

    time.sleep(0.5)  # meters see refused connections and back off meanwhile
    second, link.link = _serve(tmp_path / "deployment", db_url)
    sender.join(timeout=120)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    assert not sender.is_alive()

    report = outcome[0]
    assert report.unacknowledged == 0
    assert report.connection_errors > 0  # the meters did feel the crash
    assert acked_by_first  # ...and the first process had acknowledged some packets
    registry = MeterRegistry(deployment.ca_cert)
    register_fleet(registry, meters)
    with Store.open(db_url) as store:
        stored = {
            (m.key.meter_id, o.counter): hashlib.sha256(o.signed_original).digest()
            for m in meters
            for o in store.originals(m.key.meter_id, 0, 2**40)
        }
        counts = store.counters()
    expected = {}
    for packets in wire.values():
        for _, data in packets:
            opened = packet.open(data, deployment.headend, registry, now=now)
            expected[(opened.reading.meter_id, opened.reading.counter)] = hashlib.sha256(
                opened.signed_original
            ).digest()
    assert stored == expected  # every reading, with its own signed original
    assert counts["stored"] == total  # exactly once: no batch was counted twice
    # Whatever the first process acknowledged was already durable when it said so.
    sent_by_digest = {
        hashlib.sha256(data).digest(): data for packets in wire.values() for _, data in packets
    }
    for digest in acked_by_first:
        opened = packet.open(sent_by_digest[digest], deployment.headend, registry, now=now)
        assert (opened.reading.meter_id, opened.reading.counter) in stored
