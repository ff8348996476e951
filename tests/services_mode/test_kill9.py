"""kill -9 of any one service during a stream in services mode: nothing lost, nothing doubled.

`meterseal serve --mode services` runs as a real supervisor with real service processes on
NATS JetStream. Meters stream over TCP; once part of the stream is stored the test kills one
service with SIGKILL. The supervisor restarts it, JetStream redelivers what it had taken but
not acknowledged, the meters resend what the receiver had not acknowledged, and every
reading ends up stored exactly once. The receiver binds an ephemeral port, and a restarted
receiver binds the same one again (the meters keep sending there).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from meterseal.acquisition.tcp import TcpLink
from meterseal.meter.simulator import SimulationReport, run_fleet
from meterseal.storage import Store
from tests.services_mode.conftest import make_fleet

pytestmark = pytest.mark.services
METERS, INTERVALS = 24, 96


class Deployment:
    """A `serve --mode services` process and what it printed."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ.copy(),
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.admin = ""
        self.tcp = ""  # the receiver's first start's address
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("listening admin ") and not self.admin:
                self.admin = line.split()[2]
            if line.startswith("[receiver] listening tcp ") and not self.tcp:
                self.tcp = line.split()[3]
            if line.startswith("ready supervisor"):
                self.ready.set()

    def counters(self) -> dict[str, dict[str, int]]:
        with urllib.request.urlopen(f"{self.admin}/v1/counters", timeout=5) as response:
            return dict(json.load(response))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def _stored(url: str) -> int:
    with Store.open(url) as store:
        return store.counters().get("stored", 0)


@pytest.mark.parametrize("victim", ["receiver", "open-verify#0", "anonymize-store#0"])
def test_kill9_of_one_service_loses_and_doubles_nothing(
    victim: str, db_url: str, nats_url: str, prefix: str, tmp_path: Path
) -> None:
    if db_url.startswith("postgresql") and victim != "anonymize-store#0":
        pytest.skip("PostgreSQL: the store writer's crash is the case that differs by store")
    fleet = make_fleet(tmp_path, db_url, METERS, INTERVALS)
    command = [sys.executable, "-m", "meterseal", "serve", "--mode", "services"]
    command += ["-d", str(fleet.directory), "--store", db_url, "--nats", nats_url]
    command += ["--prefix", prefix, "--tcp", "127.0.0.1:0", "--ack-wait", "2"]
    served = Deployment(command)
    try:
        assert served.ready.wait(90), "\n".join(served.lines)
        outcome: list[SimulationReport] = []
        host, port = served.tcp.rsplit(":", 1)
        link = TcpLink(host, int(port))
        sender = threading.Thread(
            target=lambda: outcome.append(
                asyncio.run(run_fleet(fleet.wire, link, concurrency=12, window=8, pace=0.05))
            )
        )
        sender.start()
        deadline = time.monotonic() + 60
        while _stored(db_url) < fleet.packets // 4:
            assert time.monotonic() < deadline, "the stream never got going"
            time.sleep(0.05)
        pid = served.counters()["processes"][victim]
        os.kill(pid, signal.SIGKILL)
        assert _stored(db_url) < fleet.packets, "killed too late: the stream had finished"
        sender.join(timeout=120)
        assert not sender.is_alive()
        deadline = time.monotonic() + 60
        while _stored(db_url) < fleet.packets and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # anything redelivered late would show up as a second store now
        supervisor = served.counters()["supervisor"]
    finally:
        code = served.stop()
    assert code == 0, "\n".join(served.lines[-30:])
    assert supervisor["restarted"] == 1  # the victim, and nothing else, was restarted
    receivers = [line for line in served.lines if line.startswith("[receiver] listening tcp ")]
    assert {line.split()[3] for line in receivers} == {served.tcp}  # a restart kept the port
    assert outcome[0].unacknowledged == 0
    with Store.open(db_url) as store:
        counts = store.counters()
        stored = {
            (m.key.meter_id, o.counter)
            for m in fleet.meters
            for o in store.originals(m.key.meter_id, 0, 2**40)
        }
    assert len(stored) == fleet.packets  # every reading...
    assert counts["stored"] == fleet.packets  # ...stored exactly once
    assert counts.get("conflict", 0) == 0
