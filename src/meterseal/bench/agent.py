"""`meterseal bench agent`: readings one agent reads and seals per second, against the protocol.

For each protocol (NBR 14522 and its sealed asynchronous variant; DLMS/COSEM with LLS behind
the IEC 62056-47 TCP wrapper, and over HDLC as a serial line bridged to TCP) `meters` emulated
meters, each on its own TCP line in this process, hold a load profile; one agent pass reads `days`
of it from every meter at once, seals one reading per interval with the meter's key (p256)
and hands them to a link that accepts everything at once (the head-end is `bench ingest`'s).
A first pass warms the emulated meters; the best of `rounds` passes counts.

The bounds, measured on the same machine and line:

* round trip: the median time of one bare exchange with an emulated meter (a parameters
  command and its one block: command, block, ACK; sealed: one sealed request and answer;
  DLMS: the library client's GET of the serial number 0.0.96.1.0.255, one request APDU and
  its answer, timed inside one worker thread so the agent's thread hops are not in it);
  a pass over one meter needs one round trip per response block (per command when sealed;
  DLMS: per answer the meter sends after a request, counted on the emulator's side: the
  association, each GET, the release, and over HDLC SNRM, DISC and one RR per segment of a
  long answer), so one line delivers at most `readings per meter / (round trips x round-trip
  time)`;
* 9600 baud (10 bits per octet) on the serial lines: the octets a pass moves over one line at
  960 octets/s (NBR 14522: 66 per command, 258 per block, ENQ and ACK signals; DLMS over HDLC:
  every frame both ways, counted at the emulator, as on an RS-485 or optical port at 9600
  baud). The sealed variant and the DLMS wrapper travel over IP: no line rate.

The verdict: for each serial protocol, the agent keeps up with `meters` real 9600-baud lines,
i.e. it reads and seals at least as fast as they deliver (it is the agent, not its lines,
that must never be the bottleneck in a concentrator).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from rich.console import Console

from meterseal.acquisition.ingest import Ack
from meterseal.agent.dlms_driver import DlmsDriver, DlmsSecrets
from meterseal.agent.dlms_emulator import DlmsMeterLine, Transport
from meterseal.agent.dlms_meter import SERIAL, DlmsMeterApp
from meterseal.agent.driver import DriverFactory, MeterTarget
from meterseal.agent.link_keys import party
from meterseal.agent.nbr_driver import NbrDriver
from meterseal.agent.nbr_emulator import MeterLine, TcpLine
from meterseal.agent.nbr_frames import COMMAND_SIZE, RESPONSE_SIZE, Code, Command
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.agent.nbr_sealed_link import SealedMeterLine
from meterseal.agent.protocols import READER, driver_factory
from meterseal.agent.runner import AgentMeter, run_pass
from meterseal.crypto import certs
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import P256
from meterseal.meter.load import Fleet
from meterseal.meter.provisioning import provision
from meterseal.ui import TextTable, Verdict

PROTOCOLS = ("nbr14522", "nbr14522-sealed", "dlms", "dlms-hdlc")
SERIAL_LINES = ("nbr14522", "dlms-hdlc")  # the protocols with a 9600-baud line bound
BAUD_OCTETS = 960.0  # 9600 baud, 10 bits per octet (start, 8 data, stop)
DAY = 86_400


class _AcceptAll:
    """A meter link that accepts every packet at once: the agent's side only is measured."""

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        """ACCEPTED for each packet."""
        return [Ack.ACCEPTED] * len(packets)


@dataclass
class AgentRun:
    """One protocol's figures."""

    protocol: str
    meters: int
    readings: int  # per pass, all meters
    seconds: float  # the best pass
    round_trip: float  # seconds, median bare exchange
    trips_per_meter: float
    octets_per_meter: float  # on a serial line (0: not a serial protocol)
    skipped: int = 0  # meters the counted pass skipped (their readings are not in `readings`)

    @property
    def rate(self) -> float:
        """Readings read and sealed per second."""
        return self.readings / self.seconds if self.seconds else 0.0

    @property
    def line_bound(self) -> float:
        """Readings per second one line delivers at the measured round-trip time."""
        per_meter = self.readings / self.meters
        return per_meter / (self.trips_per_meter * self.round_trip) if self.round_trip else 0.0

    @property
    def baud_bound(self) -> float:
        """Readings per second one 9600-baud line delivers (0: not a serial protocol)."""
        if not self.octets_per_meter:
            return 0.0
        return (self.readings / self.meters) / (self.octets_per_meter / BAUD_OCTETS)


@dataclass
class _Tally:
    """What an emulated DLMS meter's connections moved: round trips and octets both ways."""

    trips: int = 0
    octets: int = 0


class _CountedReader:
    """The meter's side of a connection, reading: a write after a read is one round trip."""

    def __init__(self, inner: asyncio.StreamReader, tally: _Tally) -> None:
        self.inner, self.tally, self.asked = inner, tally, False

    async def readexactly(self, n: int) -> bytes:
        """Read n octets, counted."""
        data = await self.inner.readexactly(n)
        self.tally.octets += len(data)
        self.asked = True
        return data

    async def read(self, n: int = -1) -> bytes:
        """Read what comes, counted."""
        data = await self.inner.read(n)
        self.tally.octets += len(data)
        return data


class _CountedWriter:
    """The meter's side of a connection, writing (counted with its reader)."""

    def __init__(self, inner: asyncio.StreamWriter, reader: _CountedReader) -> None:
        self.inner, self.reader = inner, reader

    def write(self, data: bytes) -> None:
        """Send, counting a round trip when this answers a request."""
        if self.reader.asked:
            self.reader.tally.trips += 1
            self.reader.asked = False
        self.reader.tally.octets += len(data)
        self.inner.write(data)

    async def drain(self) -> None:
        """Wait until the data has gone."""
        await self.inner.drain()

    def close(self) -> None:
        """Close the connection."""
        self.inner.close()

    async def wait_closed(self) -> None:
        """Wait until it is closed."""
        await self.inner.wait_closed()


@dataclass
class _CountedDlmsLine(DlmsMeterLine):
    """An emulated DLMS meter whose connections are counted (the emulator counts APDUs only,
    not the frames a transport adds, which the bounds need)."""

    tally: _Tally = field(default_factory=_Tally, init=False)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted = _CountedReader(reader, self.tally)
        await super()._connection(
            cast(asyncio.StreamReader, counted),
            cast(asyncio.StreamWriter, _CountedWriter(writer, counted)),
        )


async def _round_trip(target: MeterTarget, factory: DriverFactory) -> float:
    driver = await factory(target)
    if isinstance(driver, DlmsDriver):
        return await _dlms_round_trip(driver)
    try:
        assert isinstance(driver, NbrDriver), "both variants are NBR 14522 readers"
        command = Command(Code.PARAMETERS, "000001")
        await driver.exchange(command)
        times = []
        for _ in range(50):
            began = time.perf_counter()
            await driver.exchange(command)
            times.append(time.perf_counter() - began)
        return statistics.median(times)
    finally:
        await driver.close()


async def _dlms_round_trip(driver: DlmsDriver) -> float:
    from dlms_cosem import cosem, enumerations

    serial = cosem.CosemAttribute(
        enumerations.CosemInterface.DATA, cosem.Obis.from_string(SERIAL), 2
    )

    def bare() -> float:  # the library's client alone: no event loop, no thread hop per GET
        driver.client.get(serial)
        times = []
        for _ in range(50):
            began = time.perf_counter()
            driver.client.get(serial)
            times.append(time.perf_counter() - began)
        return statistics.median(times)

    try:
        return await asyncio.to_thread(bare)
    finally:
        await driver.close()


def run_protocol(
    protocol: str, meters: int, days: int, rounds: int, headend: HeadEndKeys, where: Path
) -> AgentRun:
    """Measure one protocol: passes over `meters` emulated meters and its round trip."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = int(now.timestamp())
    ca_key, ca_cert = certs.create_ca("bench agent CA", now=now, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, meters, P256, now=now, prefix="AGT", workers=1)
    model = Fleet(7)
    emulated = [EmulatedMeter(f"{40_000_001 + i}", i, model, lambda: clock) for i in range(meters)]
    end = clock // DAY * DAY
    start = end - days * DAY
    keys = where / "link-keys"
    secret = os.urandom(16)  # this run's link keys, encrypted at rest like any key file
    sealed = protocol.endswith("-sealed")
    dlms = protocol.startswith("dlms")
    passwords = {m.serial: DlmsSecrets(os.urandom(8).hex().encode()) for m in emulated}

    def nbr_lines() -> list[TcpLine]:
        if not sealed:
            return [MeterLine(meter=meter) for meter in emulated]
        reader = party(keys, READER, secret).peer()
        return [
            SealedMeterLine(meter=m, me=party(keys, m.serial, secret), reader=reader)
            for m in emulated
        ]

    def counts(lines: Sequence[TcpLine | _CountedDlmsLine]) -> tuple[int, int]:
        """(commands, blocks) for NBR lines, (round trips, octets) for DLMS ones."""
        pairs = [
            (line.tally.trips, line.tally.octets)
            if isinstance(line, _CountedDlmsLine)
            else (line.counts.commands, line.counts.blocks)
            for line in lines
        ]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)

    async def run() -> AgentRun:
        lines: list[TcpLine | _CountedDlmsLine] = []
        if dlms:
            transport = Transport.HDLC if protocol == "dlms-hdlc" else Transport.WRAPPER
            lines += [
                _CountedDlmsLine(DlmsMeterApp(m, passwords[m.serial].password), transport)
                for m in emulated
            ]
        else:
            lines += nbr_lines()
        try:
            addresses = [await line.start() for line in lines]
            agents = [
                AgentMeter(MeterTarget(f"{h}:{p}", m.serial, timeout=30.0), f)
                for (h, p), m, f in zip(addresses, emulated, fleet, strict=True)
            ]
            factory = driver_factory(
                protocol, link_keys=keys, passphrase=secret, dlms_keys=passwords
            )
            seconds, readings, skipped = [], 0, 0
            for index in range(rounds + 1):
                before = counts(lines)
                result = await run_pass(
                    agents, factory, _AcceptAll(), headend.public(), start, end,
                    concurrency=meters,
                )  # fmt: skip
                if index:  # the first pass warms the meters' caches
                    seconds.append(result.report.seconds)
                    readings = result.report.readings_sealed
                    skipped = sum(result.report.skipped.values()) - result.report.skipped.get(
                        "no_instantaneous", 0
                    )
                after = counts(lines)
                first, second = after[0] - before[0], after[1] - before[1]
            trip = await _round_trip(agents[0].target, factory)
        finally:
            for line in lines:
                await line.stop()
        if dlms:  # DLMS: (round trips, octets); NBR: (commands, blocks)
            trips, octets = first, (second if protocol in SERIAL_LINES else 0)
        else:
            trips = first if sealed else second
            octets = 0 if sealed else first * (COMMAND_SIZE + 1) + second * (RESPONSE_SIZE + 1)
        return AgentRun(
            protocol, meters, readings, min(seconds), trip, trips / meters, octets / meters, skipped
        )

    return asyncio.run(run())


def run_agent_bench(
    console: Console, *, meters: int, days: int, rounds: int, protocols: Sequence[str], where: Path
) -> list[AgentRun]:
    """Every protocol's run."""
    headend = HeadEndKeys.generate()
    runs = []
    for protocol in protocols:
        with console.status(f"bench agent: {protocol}, {meters} meters, {days} day(s)"):
            runs.append(run_protocol(protocol, meters, days, rounds, headend, where))
    return runs


def agent_table(runs: Sequence[AgentRun], machine: str) -> TextTable:
    """Readings/s of the agent and the bounds of each protocol's line."""
    rows = [
        (
            r.protocol,
            f"{r.meters}",
            f"{r.readings}",
            f"{r.rate:,.0f}",
            f"{r.round_trip * 1e3:.2f}",
            f"{r.trips_per_meter:.0f}",
            f"{r.line_bound:,.0f}",
            f"{r.line_bound * r.meters:,.0f}",
            f"{r.baud_bound:,.0f}" if r.baud_bound else "n/a",
            f"{r.skipped}",
        )
        for r in runs
    ]
    serial = [r for r in runs if r.protocol in SERIAL_LINES]
    # A pass that skipped meters read less than its lines deliver: it does not keep up.
    keeps_up = (
        all(r.rate >= r.baud_bound * r.meters and not r.skipped for r in serial) if serial else None
    )
    return TextTable(
        "Sealing agent: readings read and sealed per second (emulated meters on TCP loopback)",
        (
            "protocol",
            "meters",
            "readings/pass",
            "readings/s",
            "round trip ms",
            "trips/meter",
            "bound/line",
            "bound x lines",
            "9600-baud bound/line",
            "meters skipped",
        ),
        rows,
        notes=(
            "readings/s: the best pass of one agent over every meter at once, read + sealed "
            "(p256) + handed to a link that accepts at once; meters and agent share this process",
            "bound/line: readings per meter / (round trips per meter x median bare round trip), "
            "on the same machine (DLMS: one GET); 9600-baud: the octets a pass moves over a "
            "serial line (NBR 14522, DLMS over HDLC; the sealed variant and the DLMS wrapper "
            "travel over IP)",
            "meters skipped: by the counted pass (a driver error; the agent's report says which)",
            machine,
        ),
        verdict=Verdict(
            "one agent reads and seals at least as fast as its meters' 9600-baud lines deliver"
            " (NBR 14522, DLMS over HDLC)",
            keeps_up,
        ),
    )


def plot_agent(runs: Sequence[AgentRun], path: Path) -> Path:
    """Measured readings/s against the bounds, per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = [r.protocol for r in runs]
    x = range(len(runs))
    ax.bar([i - 0.27 for i in x], [r.rate for r in runs], 0.27, label="agent readings/s")
    ax.bar([i for i in x], [r.line_bound * r.meters for r in runs], 0.27, label="round-trip bound")
    ax.bar(
        [i + 0.27 for i in x],
        [r.baud_bound * r.meters for r in runs],
        0.27,
        label="9600-baud bound",
    )
    ax.set_xticks(list(x), labels)
    ax.set_yscale("log")
    ax.set_ylabel("readings per second (all meters)")
    ax.legend(fontsize=8)
    fig.suptitle(f"bench agent: {runs[0].meters if runs else 0} emulated meters, one agent")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
