"""`meterseal bench dissemination`: the dissemination paper's experiments, on this machine.

The router runs as a service on NATS in its own process with its subscriptions (10,000 by
default, as in the paper); the attested aggregator runs in another, decrypting and
aggregating every reading and publishing its MODERATE/LOW releases back through the
router; this process produces the HIGH readings (one producer, as in the paper). Latency
is from the moment a batch of publications is sealed (the header's `at`) to the moment the
aggregator has decrypted and aggregated it. Router CPU is read from /proc for the router's process.

  1. isolated publications: one at a time, `gap` seconds apart (the paper: one per second);
  2. a burst of 1,000,000 publications from one producer, as fast as the router answers
     (a window of unanswered frames is the back-pressure); drain = first send to last one
     aggregated (the paper: about 53 s without SGX, 60 s with);
  3. offered rates of 1,000 … 20,000 publications/s (and beyond) for `seconds` each: mean
     and p99 latency, router CPU (the paper's ceiling without accumulated delay: 20,000/s);
  4. aggregation of 10 … 1,000 measurements: Paillier (phe) vs the trusted aggregator
     (decrypt + add) vs plain addition (the paper's figure 2), `runs` runs each.
Targets: >= 20,000/s sustained with p99 < 100 ms; the burst drained in < 53 s.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
from rich.console import Console

from meterseal.bench.dissemination_world import (
    BenchWorld,
    aggregator_process,
    build_world,
    router_process,
)
from meterseal.bench.timing import Machine
from meterseal.dissemination.homomorphic import (
    PaillierKeys,
    add_encrypted,
    decrypt_total,
    encrypt_reading,
)
from meterseal.dissemination.runners import FRAME_ITEMS
from meterseal.errors import ConfigurationError
from meterseal.runtime.nats_endpoint import connect as connect_nats
from meterseal.ui import progress_bar

RATES = (1_000, 2_500, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000)
SIZES = (10, 50, 100, 200, 400, 800, 1_000)
TARGET_RATE = 20_000
TARGET_P99_MS = 100.0
TARGET_BURST_S = 53.0
TICK = 0.01  # seconds between paced batches (a frame each)
WINDOW = 16  # frames the producer keeps unanswered (its back-pressure)


@dataclass(frozen=True)
class DisseminationPlan:
    """What to run; the defaults are the paper's experiments."""

    nats_url: str = "nats://127.0.0.1:4222"
    rates: tuple[int, ...] = RATES
    seconds: float = 10.0
    burst: int = 1_000_000
    isolated: int = 100
    gap: float = 0.05
    meters: int = 5_000
    subscriptions: int = 10_000
    sizes: tuple[int, ...] = SIZES
    runs: int = 10
    paillier_bits: int = 2048


@dataclass(frozen=True)
class Phase:
    """One measured phase: what was sent and received, latency (ms), CPU used."""

    name: str
    offered: float
    sent: int
    received: int
    seconds: float
    latency: dict[str, float]
    router_cpu: float  # share of one core
    aggregator_cpu: float
    sample: tuple[list[float], list[float]] = ((), ())  # type: ignore[assignment]

    @property
    def achieved(self) -> float:
        """Publications aggregated per second over the phase."""
        return self.received / self.seconds if self.seconds else 0.0

    @property
    def met(self) -> bool:
        """Everything arrived, at the offered rate, with p99 under the target."""
        kept_up = self.achieved >= 0.95 * self.offered
        return self.received == self.sent and kept_up and self.latency["p99"] < TARGET_P99_MS


@dataclass(frozen=True)
class AggregationPoint:
    """CPU seconds to aggregate n measurements, three ways (means over runs).

    `trusted` and `paillier` are the aggregator's part (open + add; add + decrypt the sum);
    the `_seal` / `_encrypt` parts are what the senders spent making the n inputs.
    """

    n: int
    plain: float
    trusted: float
    trusted_seal: float
    paillier: float
    paillier_encrypt: float

    @property
    def trusted_total(self) -> float:
        """Sealing the n publications and aggregating them."""
        return self.trusted + self.trusted_seal

    @property
    def paillier_total(self) -> float:
        """Encrypting the n readings and aggregating them."""
        return self.paillier + self.paillier_encrypt


@dataclass
class DisseminationBench:
    """Everything measured, and where."""

    plan: DisseminationPlan
    machine: Machine
    isolated: Phase | None = None
    burst: Phase | None = None
    rates: list[Phase] = field(default_factory=list)
    aggregation: list[AggregationPoint] = field(default_factory=list)
    inproc: InProcess | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class InProcess:
    """The embedded default: seal, route and aggregate in one process, one core."""

    publications: int
    wall: float
    cpu: float
    seal_cpu: float
    route_cpu: float
    aggregate_cpu: float

    @property
    def per_second(self) -> float:
        """Publications through all three per CPU second."""
        return self.publications / self.cpu


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Producer:
    """The head-end's side: seals readings and sends frames through the router."""

    def __init__(self, world: BenchWorld, nc: Any) -> None:
        from meterseal.dissemination.nats_transport import NatsMember

        self.world = world
        self.nc = nc
        self.index = 0
        client = world.network.clients["headend"]
        self.member = NatsMember(nc, client, namespace=world.node.namespace, window=WINDOW)
        self.report_subject = f"{world.node.namespace}.bench.report"

    async def start(self) -> None:
        """Attach the head-end's link (no deliveries come to it)."""

        async def nothing(items: list[Any]) -> None:
            return None

        await self.member.attach(nothing)

    async def send(self, count: int) -> None:
        """Seal and send `count` readings, each frame stamped when it is sealed."""
        reading, start = self.world.reading, self.index
        for offset in range(0, count, FRAME_ITEMS):
            n, at = min(FRAME_ITEMS, count - offset), int(time.time() * 1e6)
            elements: list[bytes] = []
            for i in range(start + offset, start + offset + n):
                elements += reading(i, at)
            await self.member.send(elements)
        self.index += count

    async def peek(self) -> int:
        """Readings the aggregator took since its last report."""
        message = await self.nc.request(self.report_subject, b"peek", timeout=10)
        received: int = cbor2.loads(message.data)["received"]
        return received

    async def report(self) -> dict[str, Any]:
        """The aggregator's report (and reset)."""
        message = await self.nc.request(self.report_subject, b"take", timeout=30)
        report: dict[str, Any] = cbor2.loads(message.data)
        return report

    async def wait_for(self, count: int, *, stall: float = 20.0) -> None:
        """Until the aggregator took `count`, or nothing moved for `stall` seconds."""
        seen, since = -1, time.monotonic()
        while (now := await self.peek()) < count:
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since > stall:
                return
            await asyncio.sleep(0.05)

    async def paced(self, rate: int, seconds: float) -> int:
        """Send at `rate` per second for `seconds`, in a batch every TICK; how many sent."""
        total, sent = int(rate * seconds), 0
        start = time.perf_counter()
        while sent < total:
            due = min(total, int(rate * (time.perf_counter() - start)) + 1) - sent
            if due > 0:
                await self.send(due)
                sent += due
            await asyncio.sleep(max(0.0, TICK - (time.perf_counter() - start) % TICK))
        await self.member.drain()
        return sent


async def _phase(
    producer: Producer, router_pid: int, name: str, offered: float, run: Callable[[], Any]
) -> Phase:
    cpu0, wall0 = _cpu_seconds(router_pid), time.time()
    agg_cpu0 = (await producer.report())["cpu"]  # also resets the aggregator's window
    sent = await run()
    await producer.wait_for(sent)
    report = await producer.report()
    wall = max(report["last"], wall0) - wall0
    router_cpu = (_cpu_seconds(router_pid) - cpu0) / max(wall, 1e-9)
    sample = (report["sample"][0], report["sample"][1])
    times = ([t - wall0 for t in sample[0]], sample[1])
    return Phase(
        name, offered, sent, report["received"], wall, report["latency"], router_cpu,
        (report["cpu"] - agg_cpu0) / max(wall, 1e-9), times,
    )  # fmt: skip


async def _experiments(
    bench: DisseminationBench, world: BenchWorld, router_pid: int, console: Console
) -> None:

    plan = bench.plan
    nc = await connect_nats(plan.nats_url, pending_size=64 * 1024 * 1024)
    producer = Producer(world, nc)
    await producer.start()
    await producer.paced(5_000, 0.5)  # warm-up, not recorded
    await producer.wait_for(2_500)

    async def isolated() -> int:
        for _ in range(plan.isolated):
            await producer.send(1)
            await producer.member.drain()
            await asyncio.sleep(plan.gap)
        return plan.isolated

    with progress_bar(console) as bar:
        task = bar.add_task("dissemination experiments", total=2 + len(plan.rates))
        bench.isolated = await _phase(producer, router_pid, "isolated", 1 / plan.gap, isolated)
        bar.advance(task)
        for rate in plan.rates:
            run = _rate_runner(producer, rate, plan.seconds)
            bench.rates.append(await _phase(producer, router_pid, f"{rate}/s", rate, run))
            bar.advance(task)

        async def burst() -> int:
            await producer.send(plan.burst)
            await producer.member.drain()
            return plan.burst

        bench.burst = await _phase(producer, router_pid, "burst", float(plan.burst), burst)
        bar.advance(task)
    await nc.close()


def _rate_runner(producer: Producer, rate: int, seconds: float) -> Callable[[], Any]:
    async def run() -> int:
        return await producer.paced(rate, seconds)

    return run


def _wait_ready(url: str, namespace: str, timeout: float = 20.0) -> None:
    async def probe() -> None:

        nc = await connect_nats(url, connect_timeout=2, max_reconnect_attempts=0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    await nc.request(f"{namespace}.challenge", b"probe", timeout=1)
                    await nc.request(f"{namespace}.bench.report", b"peek", timeout=1)
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            await nc.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        raise ConfigurationError(
            f"the router or aggregator did not come up on {url}: {exc}"
        ) from exc


def run_dissemination(console: Console, plan: DisseminationPlan) -> DisseminationBench:
    """Run every experiment (router and aggregator in their own processes on NATS)."""
    bench = DisseminationBench(plan, Machine.probe(None), load_before=os.getloadavg())
    with console.status(
        f"setting up the publisher, router and {plan.subscriptions:,} subscriptions"
    ):
        world = build_world(plan.meters, plan.subscriptions)
    context = multiprocessing.get_context("fork")
    router = context.Process(target=router_process, args=(world, plan.nats_url), daemon=True)
    aggregator = context.Process(
        target=aggregator_process, args=(world, plan.nats_url), daemon=True
    )
    router.start()
    aggregator.start()
    try:
        _wait_ready(plan.nats_url, world.node.namespace)
        assert router.pid is not None
        asyncio.run(_experiments(bench, world, router.pid, console))
    finally:
        for process in (router, aggregator):
            process.terminate()
            process.join(5)
    bench.inproc = inprocess_experiment(plan, world)
    bench.aggregation = aggregation_experiment(console, plan, world)
    bench.machine = Machine.probe(None)
    return bench


def inprocess_experiment(plan: DisseminationPlan, world: BenchWorld) -> InProcess:
    """The same pipeline without NATS: seal, route (`plan.subscriptions`), aggregate."""
    count = max(1_000, min(plan.burst, 200_000))
    network, aggregator = world.network, world.aggregator
    seal_cpu = route_cpu = aggregate_cpu = 0.0
    wall0 = time.perf_counter()
    for start in range(0, count, FRAME_ITEMS):
        t0 = time.process_time()
        at = int(time.time() * 1e6)
        elements: list[bytes] = []
        for i in range(start, start + FRAME_ITEMS):
            elements += world.reading(i, at)
        t1 = time.process_time()
        routed = network.router.route_elements("headend", elements)
        t2 = time.process_time()
        aggregator.consume(routed.deliveries.get("agg", []))
        releases: list[bytes] = []
        for release in aggregator.aggregation.due():  # releases are sealed and routed too
            releases += aggregator.seal(release, at=at)
        network.router.route_elements("agg", releases)
        t3 = time.process_time()
        seal_cpu, route_cpu, aggregate_cpu = (
            seal_cpu + t1 - t0, route_cpu + t2 - t1, aggregate_cpu + t3 - t2,
        )  # fmt: skip
    total = seal_cpu + route_cpu + aggregate_cpu
    n = len(range(0, count, FRAME_ITEMS)) * FRAME_ITEMS
    return InProcess(n, time.perf_counter() - wall0, total, seal_cpu, route_cpu, aggregate_cpu)


def aggregation_experiment(
    console: Console, plan: DisseminationPlan, world: BenchWorld
) -> list[AggregationPoint]:
    """Figure 2: Paillier vs the trusted aggregator vs plain addition, per size (CPU time)."""
    rng = random.Random(2)
    largest = max(plan.sizes)
    readings = [rng.randrange(0, 5_000) for _ in range(largest)]
    at = int(time.time() * 1e6)
    started = time.process_time()
    items = [world.reading(i, at) for i in range(largest)]
    per_seal = (time.process_time() - started) / largest
    member = world.aggregator.member
    with console.status(f"Paillier {plan.paillier_bits}-bit: key and {largest} encryptions"):
        keys = PaillierKeys.generate(plan.paillier_bits)
        started = time.process_time()
        encrypted = [encrypt_reading(keys.public, r) for r in readings]
        per_encrypt = (time.process_time() - started) / largest

    def trusted(n: int) -> int:
        total = 0
        for item in items[:n]:
            wh = member.open_fields(item)[1]["wh"]
            total += wh if isinstance(wh, int) else 0
        return total

    def paillier(n: int) -> int:
        return decrypt_total(keys.private, add_encrypted(keys.public, encrypted[:n]))

    points = []
    for n in plan.sizes:
        assert paillier(n) == sum(readings[:n])
        points.append(
            AggregationPoint(
                n,
                _mean_seconds(lambda n=n: sum(readings[:n]), plan.runs),  # type: ignore[misc]
                _mean_seconds(lambda n=n: trusted(n), plan.runs),  # type: ignore[misc]
                per_seal * n,
                _mean_seconds(lambda n=n: paillier(n), plan.runs),  # type: ignore[misc]
                per_encrypt * n,
            )
        )
    return points


def _mean_seconds(op: Callable[[], object], runs: int) -> float:
    op()  # warm-up, not counted: the aggregator derives and caches each customer's key once
    samples = []
    for _ in range(runs):  # CPU time: single-threaded work, and other jobs' load must not count
        start = time.process_time()
        op()
        samples.append(time.process_time() - start)
    return statistics.fmean(samples)
