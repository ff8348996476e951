"""`meterseal bench deployments`: the SGX billing paper's experiment 3.2 in our three modes.

The paper compared a monolith, microservices and microservices in SGX enclaves by the mean
acquisition time of a packet (received → stored) and the aggregation time of a 2,880-packet
month (query → bill computed, checked, signed, recorded). Here the same stages run as
`meterseal serve --mode monolith|services|trusted`, real processes on this machine, all up at
the same time in one run: a meter sends its month one packet at a time (the paper's pace,
minus its one-second sleep), in slices that go to each mode in turn, so that the shared
machine's background load falls on every mode alike. The storing process's Prometheus
histogram gives the acquisition time; then each month is billed (in-process for the
monolith, through the billing service on the bus otherwise). A second part sends a fleet as
fast as it can to services mode with 1, 2 and 4 workers per stage and reports packets per
second until everything is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from meterseal.acquisition.tcp import TcpLink
from meterseal.bench.served import Served
from meterseal.bench.timing import Machine
from meterseal.billing.completeness import Period
from meterseal.billing.tariff import builtin_tariffs
from meterseal.crypto.suites import P256
from meterseal.demo import register
from meterseal.deployment import Deployment, init_deployment
from meterseal.errors import ConfigurationError
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import ProvisionedMeter, provision
from meterseal.meter.simulator import run_fleet
from meterseal.meter.workload import Wire, Workload, seal_workload
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from meterseal.ui import progress_bar

MODES = ("monolith", "services", "trusted")
TARIFF = "example-flat"
TRUSTED_TARGET = 1.3  # trusted mode within 1.3x of services mode per packet


@dataclass(frozen=True)
class ModeResult:
    """One mode's acquisition and aggregation figures."""

    mode: str
    packets: int
    acquisition_mean: float  # seconds, received -> stored, from the storing process's histogram
    send_seconds: float  # the whole month sent one packet at a time (send -> ack each)
    bill_seconds: float  # the billing stage's own time for the month (query -> recorded)
    bill_roundtrip: float  # order -> outcome as the requester saw it (= bill_seconds in-process)
    processes: int


@dataclass(frozen=True)
class ScaleResult:
    """Services mode with `workers` per stage: packets per second until all were stored."""

    workers: int
    packets: int
    seconds: float

    @property
    def rate(self) -> float:
        """Stored packets per second."""
        return self.packets / self.seconds if self.seconds > 0 else 0.0


@dataclass
class DeploymentsBench:
    """Everything one run measured."""

    machine: Machine
    store: str
    intervals: int
    modes: list[ModeResult] = field(default_factory=list)
    scaling: list[ScaleResult] = field(default_factory=list)

    def mode(self, name: str) -> ModeResult | None:
        """The result of mode `name`, if it ran."""
        return next((m for m in self.modes if m.mode == name), None)

    @property
    def trusted_ratio(self) -> float | None:
        """Trusted over services mean acquisition time per packet."""
        services, trusted = self.mode("services"), self.mode("trusted")
        if services is None or trusted is None or services.acquisition_mean <= 0:
            return None
        return trusted.acquisition_mean / services.acquisition_mean


@dataclass(frozen=True)
class BenchPlan:
    """What to run."""

    modes: tuple[str, ...] = MODES
    intervals: int = 2880
    store: str = "sqlite"  # or a postgresql+psycopg:// URL (a scratch schema per run)
    workers: tuple[int, ...] = (1, 2, 4)
    scale_meters: int = 100
    scale_intervals: int = 96
    nats_url: str | None = None
    workdir: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "meterseal-bench-deployments"
    )


class World:
    """A deployment with the month's meter and the scaling fleet, in a scratch directory."""

    def __init__(self, plan: BenchPlan, now: dt.datetime) -> None:
        self.plan = plan
        self.now = now
        self.root = plan.workdir / uuid.uuid4().hex[:8]
        self.deployment: Deployment = init_deployment(self.root / "deployment", now=now)
        d = self.deployment
        self.meters = provision(d.ca_key, d.ca_cert, 1 + plan.scale_meters, P256, now=now)
        first_day = (now - dt.timedelta(days=plan.intervals * INTERVAL / 86_400 + 1)).date()
        self.period = Period.days(first_day, plan.intervals * INTERVAL // 86_400)
        self.month = self._seal(self.meters[:1], self.period.start, plan.intervals)
        start = (int(now.timestamp()) // INTERVAL - plan.scale_intervals) * INTERVAL
        self.fleet = self._seal(self.meters[1:], start, plan.scale_intervals)
        self._runs = 0

    def _seal(self, meters: list[ProvisionedMeter], start: int, intervals: int) -> Wire:
        work = Workload(meters, self.deployment.headend.public(), start, intervals)
        return seal_workload(work, now=self.now)

    def fresh_store(self) -> str:
        """A new empty store holding the registry and the tariff; its URL."""
        self._runs += 1
        if self.plan.store == "sqlite":
            url = f"sqlite:///{self.root / f'store-{self._runs}.db'}"
        else:
            from meterseal.storage.scratch import scratch_schema

            # Kept for the rest of the run; dropped with the schema when the process ends.
            context = scratch_schema(self.plan.store, f"ms_bench_dep{self._runs}")
            url = context.__enter__()
        with Store.open(url) as store:
            register(store, self.deployment, self.meters)
            BillStore(store).add_tariff(builtin_tariffs().latest(TARIFF), now=self.now)
        return url


def _serve(world: World, mode: str, store_url: str, workers: int, prefix: str) -> Served:
    args = ["serve", "--mode", mode, "-d", str(world.root / "deployment"), "--store", store_url]
    args += ["--tcp", "127.0.0.1:0", "--status-every", "3600"]
    if mode != "monolith":
        args += ["--workers", str(workers), "--prefix", prefix, "--ack-wait", "10"]
        if world.plan.nats_url:
            args += ["--nats", world.plan.nats_url]
    if mode == "trusted":
        from meterseal.bench.cas_setup import start_cas

        args += ["--cas", start_cas(world.root / "deployment", store_url)]
    served = Served(args, ready="monolith" if mode == "monolith" else "supervisor")
    served.wait_ready()
    return served


def _serve_or_drop(world: World, mode: str, store_url: str, workers: int, prefix: str) -> Served:
    """`_serve`, dropping the run's streams if it fails (its processes may have made them)."""
    try:
        return _serve(world, mode, store_url, workers, prefix)
    except BaseException:
        _drop_streams(world, prefix, mode)
        raise


def _stored(url: str) -> int:
    with Store.open(url) as store:
        return store.counters().get("stored", 0)


def _wait_stored(url: str, total: int, timeout: float = 600.0) -> float:
    deadline = time.monotonic() + timeout
    while (count := _stored(url)) < total:
        if time.monotonic() > deadline:
            raise ConfigurationError(f"only {count:,} of {total:,} packets stored in time")
        time.sleep(0.05)
    return time.perf_counter()


def _acquisition(served: Served, mode: str) -> float:
    """Mean seconds received -> stored, summed over the storing processes' histograms."""
    storing = served.admins("anonymize-store") if mode != "monolith" else [served.endpoint("admin")]
    count = total = 0.0
    for admin in storing:
        samples = served.scrape(admin)
        count += samples.get("meterseal_acquisition_seconds_count", 0.0)
        total += samples.get("meterseal_acquisition_seconds_sum", 0.0)
    return total / count if count else 0.0


def _bill(world: World, mode: str, store_url: str, prefix: str) -> tuple[float, float]:
    """Warm up on the month's first hour (a bill of its own), then time the rest's bill.

    The timed bill starts after that hour (2,876 of a month's 2,880 slots): billing refuses a
    period that overlaps a bill in force, so the month cannot be billed over its first hour.
    """
    first_day = Period(world.period.start, world.period.start + 3_600)  # its first hour
    rest = Period(first_day.end, world.period.end)
    if mode == "monolith":
        from meterseal.billing.service import BillingService

        # The bench process holds every sealed packet of the run; a billing process would not.
        # Freeze them out of the collector's way, as `bench billing` does.
        gc.collect()
        gc.freeze()
        with Store.open(store_url) as store:
            bills = BillStore(store)
            service = BillingService(bills, world.deployment.billing_key)
            tariff = bills.tariff_book().latest(TARIFF)
            meters = [world.meters[0].key.meter_id]
            customer = world.meters[0].customer_id
            service.bill_customer(customer, meters, first_day, tariff)
            billed = service.bill_customer(customer, meters, rest, tariff)
        return billed.total_seconds, billed.total_seconds
    asyncio.run(_order_bill(world, first_day, prefix))
    return asyncio.run(_order_bill(world, rest, prefix))


async def _order_bill(world: World, period: Period, prefix: str) -> tuple[float, float]:
    from meterseal.services.bus import BILL_DONE, BILLING
    from meterseal.services.messages import BillOrder, BillOutcome
    from meterseal.services.nats_bus import NatsBus

    bus = await NatsBus.connect(world.plan.nats_url, prefix=prefix)
    try:
        request = uuid.uuid4().hex
        done = await bus.listen(f"{BILL_DONE}.{request}")
        customer = world.meters[0].customer_id
        order = BillOrder(request, customer, period.start, period.end, TARIFF)
        started = time.perf_counter()
        await bus.publish(BILLING, order.encode(), msg_id=request)
        outcome = BillOutcome.decode(await asyncio.wait_for(done.get(), 120))
        roundtrip = time.perf_counter() - started
    finally:
        await bus.close()
    if outcome.error:
        raise ConfigurationError(f"the billing service refused the month: {outcome.error}")
    return outcome.seconds, roundtrip


@dataclass
class _Running:
    """One mode's deployment, up for the whole interleaved month."""

    mode: str
    url: str
    prefix: str
    served: Served
    sent_seconds: float = 0.0


def _start_mode(world: World, mode: str) -> _Running:
    url = world.fresh_store()
    prefix = f"b{uuid.uuid4().hex[:8]}"
    return _Running(mode, url, prefix, _serve_or_drop(world, mode, url, 1, prefix))


def _send_chunk(run: _Running, chunk: Wire, advance: Callable[[int], object]) -> None:
    host, port = run.served.endpoint("tcp").rsplit(":", 1)
    started = time.perf_counter()
    link = TcpLink(host, int(port))
    report = asyncio.run(run_fleet(chunk, link, concurrency=1, window=1, progress=advance))
    run.sent_seconds += time.perf_counter() - started
    if report.unacknowledged:
        raise ConfigurationError(f"{run.mode}: {report.unacknowledged} packets unacknowledged")


def _finish_mode(world: World, run: _Running) -> ModeResult:
    _wait_stored(run.url, world.plan.intervals)
    acquisition = _acquisition(run.served, run.mode)
    bill, roundtrip = _bill(world, run.mode, run.url, run.prefix)
    processes = len({who for who, endpoint in run.served.endpoints if endpoint == "admin"})
    return ModeResult(
        run.mode, world.plan.intervals, acquisition, run.sent_seconds, bill, roundtrip, processes
    )


def run_modes(
    world: World, modes: Sequence[str], advance: Callable[[str, int], object], chunks: int = 12
) -> list[ModeResult]:
    """Every mode up at once; the month sent in `chunks` slices, mode after mode, one packet
    at a time, so background load on the shared machine falls on every mode alike."""
    running: list[_Running] = []
    try:
        for mode in modes:
            running.append(_start_mode(world, mode))
        ((meter, packets),) = world.month.items()
        size = -(-len(packets) // chunks)
        for first in range(0, len(packets), size):
            chunk = {meter: packets[first : first + size]}
            for run in running:
                _send_chunk(run, chunk, functools.partial(advance, run.mode))
        return [_finish_mode(world, run) for run in running]
    finally:
        with contextlib.ExitStack() as cleanup:  # every run's, even when one of them fails
            for run in running:
                cleanup.callback(_drop_streams, world, run.prefix, run.mode)
                cleanup.callback(run.served.stop)  # first: callbacks run last in, first out


def run_scale(world: World, workers: int, advance: Callable[[int], object]) -> ScaleResult:
    """Services mode with `workers` per stage: the fleet as fast as it goes."""
    url = world.fresh_store()
    prefix = f"s{uuid.uuid4().hex[:8]}"
    served = _serve_or_drop(world, "services", url, workers, prefix)
    total = sum(len(p) for p in world.fleet.values())
    try:
        host, port = served.endpoint("tcp").rsplit(":", 1)
        started = time.perf_counter()
        asyncio.run(
            run_fleet(
                world.fleet, TcpLink(host, int(port)), concurrency=100, window=32, progress=advance
            )
        )
        finished = _wait_stored(url, total)
    finally:
        served.stop()
        _drop_streams(world, prefix, "services")
    return ScaleResult(workers, total, finished - started)


def _drop_streams(world: World, prefix: str, mode: str) -> None:
    if mode == "monolith":
        return
    from meterseal.services.nats_bus import NatsBus

    async def drop() -> None:
        bus = await NatsBus.connect(world.plan.nats_url, prefix=prefix)
        try:
            await bus.delete_streams()
        finally:
            await bus.close()

    asyncio.run(drop())


def run_deployments(console: Console, plan: BenchPlan) -> DeploymentsBench:
    """Every mode's month, then the scaling runs; with progress bars."""
    unknown = set(plan.modes) - set(MODES)
    if unknown:
        raise ConfigurationError(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    now = dt.datetime.now(dt.UTC)
    with console.status("provisioning meters and sealing their readings"):
        world = World(plan, now)
    bench = DeploymentsBench(Machine.probe(None), plan.store.split(":")[0], plan.intervals)
    with progress_bar(console) as bar:
        tasks = {
            mode: bar.add_task(f"{mode}: a month, one packet at a time", total=plan.intervals)
            for mode in plan.modes
        }
        bench.modes = run_modes(world, plan.modes, lambda mode, n: bar.advance(tasks[mode], n))
        total = sum(len(p) for p in world.fleet.values())
        for workers in plan.workers:
            task = bar.add_task(f"services, {workers} worker(s)/stage: fleet", total=total)
            bench.scaling.append(run_scale(world, workers, functools.partial(bar.advance, task)))
    bench.machine = Machine.probe(None)  # the load average at the end
    return bench


def scaling_note(results: Sequence[ScaleResult]) -> str:
    """How the rate changed from 1 worker to the most, in words."""
    if len(results) < 2:
        return ""
    first, best = results[0], max(results, key=lambda r: r.rate)
    return (
        f"{first.rate:,.0f}/s with {first.workers} worker(s) per stage; best {best.rate:,.0f}/s "
        f"with {best.workers} ({best.rate / first.rate:.2f}x)"
    )
