"""`meterseal bench connections`: tens of thousands of meters connected at once over TCP.

No process here may hold more than 20,000 open files (a hard RLIMIT_NOFILE that cannot be
raised), and one source address reaches one destination port from ~28,000 ephemeral ports,
so 65,000 meter sockets fit in no single process on either side. The bench therefore runs
  * the head-end in this process (TCP receiver, trusted stages, store) with few sockets;
  * R relay processes (`acquisition.relay`, spawned, no key) sharing one port with
    SO_REUSEPORT, each holding its share of the meter connections;
  * S sender processes (spawned), each holding up to ~16,000 meter connections, bound to
    source addresses of its own in 127.0.0.0/8 (at most `PER_SOURCE` connections each).
Phases: provision and seal (before any clock); connect every meter; a barrier that counts
the open connections three ways (the senders, the relays' own counters, the kernel's
ESTABLISHED sockets on the relay port); every meter sends its sealed reading(s) and waits
for the acks; then the checks of "zero errors" (every connection made, every packet
ACCEPTED and stored, no fault counted by a relay or the head-end).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import math
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from cryptography import x509
from rich.console import Console

from meterseal.acquisition.headend import HeadEnd, HeadEndReport, HeadEndSettings
from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.relay import RelayConfig, RelayStatus
from meterseal.acquisition.relay_pool import RelayPool, raise_open_files_limit, receive
from meterseal.acquisition.tcp import TcpLimits, encode_frames, open_frames
from meterseal.bench.ingest import scratch_store
from meterseal.bench.timing import Machine
from meterseal.crypto import certs
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.registry import MeterRecord
from meterseal.crypto.suites import P256
from meterseal.deployment import TrustedMaterial
from meterseal.errors import ConfigurationError
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import fleet_records, provision
from meterseal.meter.workload import Workload, seal_workload
from meterseal.storage import Store
from meterseal.ui import TextTable, Verdict, progress_bar

PER_RELAY = 14_000  # meter connections a relay should expect (FD limit 20,000, uneven spread)
PER_SENDER = 16_250  # meter connections per sender process
PER_SOURCE = 8_000  # connections per source address (≈28,000 ephemeral ports each)
CONNECTING = 256  # connects in flight per sender: the relays' accept queues stay short
HOLD = 900.0  # seconds a relay keeps a silent meter connection (they wait at the barrier)
Timeline = list[tuple[float, int]]  # (wall time, count so far)
HEADERS: tuple[str, ...] = ("meters", "relays", "senders", "store", "connect")
HEADERS += ("at once (senders / relays / kernel)", "packets", "accepted", "stored", "errors")
HEADERS += ("send → last ack", "relay peak RSS MiB (max / sum)")


@dataclass(frozen=True)
class ConnectionsPlan:
    """How many meters, relays and senders; what each meter sends; which store."""

    meters: int
    relays: int = 0  # 0: enough for PER_RELAY each
    senders: int = 0  # 0: enough for PER_SENDER each
    readings: int = 1
    store: str = "sqlite"
    upstreams: int = 8  # per relay
    open_workers: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "relays", self.relays or math.ceil(self.meters / PER_RELAY))
        object.__setattr__(self, "senders", self.senders or math.ceil(self.meters / PER_SENDER))

    def check(self, open_files: int) -> None:
        """Refuse a plan that puts more sockets in one process than it may open."""
        per_sender = math.ceil(self.meters / self.senders)
        per_relay = math.ceil(self.meters / self.relays * 1.1)  # the kernel's spread is uneven
        if max(per_sender, per_relay) > open_files - 256 or self.senders > 254:
            raise ConfigurationError(
                f"{per_sender:,} sockets per sender and up to {per_relay:,} per relay do not "
                f"fit {open_files:,} open files per process: use more senders or relays"
            )


@dataclass(frozen=True)
class _SenderJob:
    index: int
    target: tuple[str, int]
    sources: tuple[str, ...]
    packets: tuple[bytes, ...]  # per meter, its readings already framed
    readings: int
    timeout: float = 120.0


@dataclass
class ConnectionsResult:
    """What one run did and counted."""

    plan: ConnectionsPlan
    connected: int = 0  # as the senders counted
    relay_open: int = 0  # at the barrier, by the relays' own counters
    relay_spread: tuple[int, int] = (0, 0)  # the fewest and most meters on one relay then
    kernel_established: int = 0  # at the barrier, ESTABLISHED sockets on the relay port
    connect_seconds: float = 0.0
    packets: int = 0
    accepted: int = 0
    stored: int = 0
    exchange_seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    relay_peak_rss_mib: list[float] = field(default_factory=list)
    connect_timelines: list[Timeline] = field(default_factory=list)
    ack_timelines: list[Timeline] = field(default_factory=list)
    started: float = 0.0  # wall time the first sender was started

    @property
    def ok(self) -> bool:
        """Zero errors: every meter connected at once, every packet accepted and stored."""
        expected = self.plan.meters
        return (
            not +self.errors
            and self.connected == self.relay_open == self.kernel_established == expected
            and self.accepted == self.stored == self.packets == expected * self.plan.readings
        )


def _sender_process(job: _SenderJob, control: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops its senders itself
    raise_open_files_limit()
    asyncio.run(_sender(job, control))


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _sender(job: _SenderJob, control: Connection) -> None:
    """Connect every meter of the job, wait for "go", exchange, wait for "close"."""
    host, port = job.target
    streams: list[tuple[Stream, bytes]] = []
    state: Counter[str] = Counter()
    gate = asyncio.Semaphore(CONNECTING)

    async def connect(source: str, frames: bytes) -> None:
        async with gate:
            try:
                opening = open_frames(host, port, source=source)
                streams.append((await asyncio.wait_for(opening, job.timeout), frames))
                state["connected"] += 1
            except (OSError, TimeoutError):
                state["connect_failed"] += 1

    async def exchange(stream: Stream, frames: bytes) -> None:
        reader, writer = stream
        try:
            writer.write(frames)
            replies = await asyncio.wait_for(reader.readexactly(job.readings), job.timeout)
            state.update(Ack(b).name.lower() for b in replies)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            state["exchange_failed"] += 1
        state["answered"] += 1

    sources = [job.sources[i % len(job.sources)] for i in range(len(job.packets))]
    connecting = asyncio.gather(*map(connect, sources, job.packets))
    timeline = await _reporting(control, state, "connected", connecting)
    # The connections live until the end. Out of the GC's reach, they no longer make each
    # full collection walk ~16,000 streams (seconds here) while the meters await acks.
    gc.freeze()
    control.send(("connected", dict(state), timeline))
    await receive(control)  # "go": every sender is connected
    exchanges = asyncio.gather(*(exchange(stream, frames) for stream, frames in streams))
    timeline = await _reporting(control, state, "answered", exchanges)
    control.send(("done", dict(state), timeline))
    await receive(control)  # "close": everything stays open until the bench has counted
    for (_, writer), _ in streams:
        writer.close()


async def _reporting(
    control: Connection, state: Counter[str], key: str, work: Awaitable[object]
) -> Timeline:
    """Await `work`, sending `state` to the bench every 0.2 s; the timeline of `state[key]`."""
    task = asyncio.ensure_future(work)
    timeline: Timeline = []
    while True:
        timeline.append((time.time(), state[key]))
        control.send(("progress", dict(state)))
        done, _ = await asyncio.wait({task}, timeout=0.2)
        if done:
            await task
            timeline.append((time.time(), state[key]))
            return timeline


class _Sender:
    """A spawned sender process and the pipe that steers it."""

    def __init__(self, job: _SenderJob) -> None:
        self.job = job
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process: BaseProcess = context.Process(target=_sender_process, args=(job, theirs))
        self.process.daemon = True
        self.process.start()  # blocks until the child has read its job (megabytes of packets)
        theirs.close()

    async def until(
        self, kind: str, progress: Callable[[dict[str, int]], object]
    ) -> tuple[Any, ...]:
        """Pass progress messages to `progress` until a `kind` message; its payload."""
        while True:
            message = await receive(self.pipe)
            assert isinstance(message, tuple)
            progress(message[1])  # every message leads with the sender's counters
            if message[0] == kind:
                return message[1:]

    def stop(self) -> None:
        """Let it close its connections and exit; kill it if it does not."""
        with contextlib.suppress(OSError):
            self.pipe.send("close")
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.pipe.close()


def established(port: int) -> int:
    """ESTABLISHED TCP sockets whose local port is `port`, as the kernel lists them."""
    suffix = f":{port:04X}"
    count = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(path) as table:
            next(table)  # the header
            for line in table:
                fields = line.split(None, 4)
                count += fields[3] == "01" and fields[1].endswith(suffix)
    return count


def run_connections(console: Console, plan: ConnectionsPlan) -> ConnectionsResult:
    """Provision and seal, then connect every meter at once through the relays and send."""
    plan.check(raise_open_files_limit())
    now = dt.datetime.now(dt.UTC)
    keys = HeadEndKeys.generate()
    ca_cert, records, framed = _fleet(console, plan, keys, now)
    with scratch_store(plan.store) as url, Store.open(url) as store:
        store.register_meters(records, now=now)
        with console.status("the head-end loads its registry"):
            settings = HeadEndSettings(
                tcp="127.0.0.1:0", open_workers=plan.open_workers, registry_refresh=HOLD
            )
            head = HeadEnd(TrustedMaterial(keys, ca_cert, b"c" * 32), store, settings)
        result = asyncio.run(_run(console, plan, head, framed))
        result.stored = store.counters().get("stored", 0)
    if missing := result.packets - result.stored:
        result.errors["not stored"] += missing
    return result


def _fleet(
    console: Console, plan: ConnectionsPlan, keys: HeadEndKeys, now: dt.datetime
) -> tuple[x509.Certificate, list[MeterRecord], list[bytes]]:
    """The CA, the registry records and each meter's framed packets; the meter keys are dropped.

    The meters' keys stay out of the head-end's process from here on, as they would in a
    deployment, and so do their hundreds of thousands of objects that its GC would walk.
    """
    ca_key, ca_cert = certs.create_ca("bench CA", now=now, rng=os.urandom)
    start = (int(now.timestamp()) // INTERVAL - plan.readings) * INTERVAL
    with progress_bar(console) as bar:
        task = bar.add_task(f"provisioning {plan.meters:,} p256 meters", total=plan.meters)
        fleet = provision(
            ca_key,
            ca_cert,
            plan.meters,
            P256,
            now=now,
            prefix="CONN",
            progress=lambda n: bar.advance(task, n),
        )
        sealing = bar.add_task(
            f"meters seal {plan.meters * plan.readings:,} readings", total=plan.meters
        )
        wire = seal_workload(
            Workload(fleet, keys.public(), start, plan.readings),
            now=now,
            progress=lambda n: bar.advance(sealing, n),
        )
    with console.status("registering the fleet (each certificate checked against the CA)"):
        records = fleet_records(ca_cert, fleet)
    return ca_cert, records, [encode_frames(d for _, d in packets) for packets in wire.values()]


async def _run(
    console: Console, plan: ConnectionsPlan, head: HeadEnd, framed: list[bytes]
) -> ConnectionsResult:
    result = ConnectionsResult(plan, packets=len(framed) * plan.readings)
    host, port = (await head.start())["tcp"].rsplit(":", 1)
    limits = TcpLimits(idle_timeout=HOLD, max_per_source=PER_SOURCE)
    pool = RelayPool(
        RelayConfig(("127.0.0.1", 0), (host, int(port)), plan.upstreams, limits), plan.relays
    )
    senders: list[_Sender] = []
    final: list[RelayStatus] = []
    try:
        relay_port = await asyncio.to_thread(pool.start)
        jobs = _jobs(plan, ("127.0.0.1", relay_port), framed)
        senders = list(await asyncio.gather(*(asyncio.to_thread(_Sender, job) for job in jobs)))
        await _connect(console, senders, result)
        await _barrier(pool, relay_port, result)
        await _exchange(console, senders, result)
        if (still := sum(s.open for s in await asyncio.to_thread(pool.status))) != plan.meters:
            result.errors["closed before the end"] += plan.meters - still
    finally:
        for sender in senders:
            await asyncio.to_thread(sender.stop)
        final = await asyncio.to_thread(pool.stop)
        await head.stop()
    result.relay_peak_rss_mib = [status.peak_rss_kib / 1024 for status in final]
    _count_faults(result, final, head.report())
    return result


def _jobs(plan: ConnectionsPlan, target: tuple[str, int], framed: list[bytes]) -> list[_SenderJob]:
    """Meters dealt out to the senders; each sender's own source addresses."""
    jobs = []
    for index in range(plan.senders):
        mine = tuple(framed[index :: plan.senders])
        sources = tuple(
            f"127.0.{index + 1}.{k + 1}" for k in range(math.ceil(len(mine) / PER_SOURCE))
        )
        jobs.append(_SenderJob(index, target, sources, mine, plan.readings))
    return jobs


async def _all_senders(
    console: Console, senders: list[_Sender], kind: str, key: str, *, each: bool
) -> list[tuple[Any, ...]]:
    """Every sender's `kind` message; a progress bar of their `key` counters meanwhile."""
    with progress_bar(console) as bar:
        total = bar.add_task(f"meters {key}", total=sum(len(s.job.packets) for s in senders))
        counts = [0] * len(senders)

        def shown(index: int) -> Callable[[dict[str, int]], None]:
            size = len(senders[index].job.packets)
            task = bar.add_task(f"  sender {index}", total=size) if each else None

            def show(state: dict[str, int]) -> None:
                counts[index] = state.get(key, 0)
                if task is not None:
                    bar.update(task, completed=counts[index])
                bar.update(total, completed=sum(counts))

            return show

        return await asyncio.gather(*(s.until(kind, shown(i)) for i, s in enumerate(senders)))


async def _connect(console: Console, senders: list[_Sender], result: ConnectionsResult) -> None:
    """Wait until every sender has connected its meters, with one progress bar each."""
    outcomes = await _all_senders(console, senders, "connected", "connected", each=True)
    for state, timeline in outcomes:
        result.connected += state.get("connected", 0)
        result.errors["connect failed"] += state.get("connect_failed", 0)
        result.connect_timelines.append(timeline)
    result.started = min(timeline[0][0] for timeline in result.connect_timelines)
    result.connect_seconds = max(t[-1][0] for t in result.connect_timelines) - result.started


async def _barrier(
    pool: RelayPool, port: int, result: ConnectionsResult, wait: float = 60.0
) -> None:
    """Count the open connections on the relays' side: their own counters and the kernel's."""
    # A connection the kernel completed may still wait in a relay's accept queue.
    deadline = time.monotonic() + wait
    while True:
        each = [s.open for s in await asyncio.to_thread(pool.status)]
        result.relay_open, result.relay_spread = sum(each), (min(each), max(each))
        if result.relay_open >= result.connected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    result.kernel_established = await asyncio.to_thread(established, port)


async def _exchange(console: Console, senders: list[_Sender], result: ConnectionsResult) -> None:
    """Every meter sends its readings and waits for the acks."""
    started = time.perf_counter()
    for sender in senders:
        sender.pipe.send("go")
    outcomes = await _all_senders(console, senders, "done", "answered", each=False)
    result.exchange_seconds = time.perf_counter() - started
    for state, timeline in outcomes:
        result.accepted += state.get("accepted", 0)
        for key in ("rejected", "retry", "exchange_failed"):
            result.errors[key.replace("_", " ")] += state.get(key, 0)
        result.ack_timelines.append(timeline)


def _count_faults(
    result: ConnectionsResult, relays: list[RelayStatus], report: HeadEndReport
) -> None:
    """Anything a relay or the head-end counted besides normal events is an error."""
    if len(relays) != result.plan.relays:
        result.errors["relay lost"] += result.plan.relays - len(relays)
    for status in relays:
        result.errors.update({f"relay {k}": v for k, v in status.faults.items()})
    normal = {"tcp": "connections", "stages": "stored", "ingest": "accepted"}
    counted = {**report.transports, "stages": report.stages, "ingest": report.ingest}
    for where, counts in counted.items():
        result.errors.update(
            {f"head-end {where} {k}": v for k, v in counts.items() if k != normal[where]}
        )


def result_table(results: Sequence[ConnectionsResult], machine: Machine) -> TextTable:
    """One row per run: how many at once, how fast connected, packets and errors, relay memory."""
    rows = [
        (
            f"{r.plan.meters:,}",
            str(r.plan.relays),
            str(r.plan.senders),
            r.plan.store,
            f"{r.connect_seconds:.1f} s ({r.connected / max(r.connect_seconds, 1e-9):,.0f}/s)",
            f"{r.connected:,} / {r.relay_open:,} / {r.kernel_established:,}",
            f"{r.packets:,}",
            f"{r.accepted:,}",
            f"{r.stored:,}",
            f"{sum((+r.errors).values()):,}",
            f"{r.exchange_seconds:.1f} s",
            f"{max(r.relay_peak_rss_mib, default=0):,.0f} / {sum(r.relay_peak_rss_mib):,.0f}",
        )
        for r in results
    ]
    notes = [
        f"{machine.cpu}, {machine.cpus} CPUs, {machine.platform}; load {machine.load[0]:.2f}",
        "at once: connected as the senders, the relays' own counters and the kernel "
        "(ESTABLISHED on the relay port) counted them at the barrier, before any packet",
        *(
            f"meters per relay at the barrier: {r.relay_spread[0]:,} to {r.relay_spread[1]:,}"
            for r in results
        ),
    ]
    notes += [f"errors: {dict(+r.errors)}" for r in results if +r.errors]
    return TextTable(
        "Connections: meters connected at once over TCP through relays, then one exchange each",
        HEADERS,
        rows,
        tuple(notes),
        Verdict(
            "every meter connected at once, and zero errors",
            all(r.ok for r in results),
        ),
    )


def plot_connections(result: ConnectionsResult, path: Path) -> Path:
    """Meters connected over time per sender (stacked), then meters answered over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, timelines, title in (
        (left, result.connect_timelines, "meters connected (stacked by sender)"),
        (right, result.ack_timelines, "meters answered after the barrier (stacked by sender)"),
    ):
        end = max((t[-1][0] for t in timelines), default=result.started)
        begin = min((t[0][0] for t in timelines), default=result.started)
        grid = np.linspace(begin, end, 400)
        layers = [np.interp(grid, [w for w, _ in t], [n for _, n in t]) for t in timelines]
        labels = [f"sender {i}" for i in range(len(layers))]
        axis.stackplot(grid - begin, layers, labels=labels, alpha=0.8)
        axis.axhline(result.plan.meters, color="grey", linestyle="--", linewidth=1)
        axis.set_xlabel("seconds")
        axis.set_title(title, fontsize=10)
        axis.legend(loc="upper left", fontsize=8)
    left.set_ylabel("meters")
    fig.suptitle(
        f"{result.plan.meters:,} meters, {result.plan.relays} relay and "
        f"{result.plan.senders} sender processes, {result.plan.store}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
