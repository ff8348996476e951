"""`meterseal bench ingest`: packets per second from sent to durable, against the open-only bound.

For each suite, one run: a fleet is provisioned and its readings sealed beforehand (the
meters' work, not the head-end's). Then, on the same machine and with the same number of
opening processes, the bench measures
  * the open-only bound: the trusted stages' opener alone on the same packets, batch by batch;
  * end to end: a sender process pushes every packet through the transport into the head-end
    (receiver → ingest → trusted stages → store) and waits for every acknowledgement, which the
    head-end only gives once the packet is durable. Over TCP it pipelines frames on a few
    connections; over MQTT it publishes each packet (QoS 1) to its meter's topic on a real
    Mosquitto and waits for the head-end's application ack on the meter's ack topic.
Acquisition latency is the SGX billing paper's: from receipt at the head-end to durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import multiprocessing
import os
import queue
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from meterseal.acquisition.headend import HeadEnd, HeadEndSettings
from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.parallel import ParallelOpener
from meterseal.acquisition.tcp import encode_frames
from meterseal.bench.timing import Machine
from meterseal.crypto import certs, packet
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import CipherSuite
from meterseal.deployment import TrustedMaterial
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import fleet_records, provision
from meterseal.meter.simulator import run_fleet
from meterseal.meter.workload import Wire, Workload, seal_workload
from meterseal.storage import Store
from meterseal.storage.scratch import scratch_schema
from meterseal.ui import TextTable, Verdict, milliseconds, pass_fail, progress_bar

TRANSPORTS = ("tcp", "mqtt", "inproc")
POSTGRES_URL = os.environ.get(
    "MS_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MQTT_URL = os.environ.get("MS_MQTT_URL", "mqtt://127.0.0.1:1883")
# Mosquitto queues at most max_queued_messages (default 1,000) QoS 1 messages per client
# beyond those in flight and drops the rest, so the sender keeps fewer than that unanswered.
MQTT_INFLIGHT = 960
MQTT_WINDOW = 8  # packets a meter publishes before awaiting their acks
TARGET_SUITE = "p256"  # the suite the targets are set for; the others are measured beside it
TARGET_SHARE = 0.85  # end to end over the open-only bound of the same run


@dataclass(frozen=True)
class IngestResult:
    """One suite's run."""

    suite: str
    store: str
    transport: str
    packets: int
    open_workers: int
    bound_per_s: float  # open-only, same opener
    end_to_end_per_s: float
    latency_p50: float | None
    latency_p99: float | None
    stored: int

    @property
    def ratio(self) -> float:
        """End to end as a share of the open-only bound."""
        return self.end_to_end_per_s / self.bound_per_s if self.bound_per_s else 0.0


@contextlib.contextmanager
def scratch_store(kind: str) -> Iterator[str]:
    """A database URL for one run: a temporary SQLite file or a PostgreSQL scratch schema."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="meterseal-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    if kind != "postgres":
        raise ValueError(f"store must be sqlite or postgres, not {kind!r}")
    with scratch_schema(POSTGRES_URL, "ms_bench") as url:
        yield url


def open_bound(
    opener: ParallelOpener, blobs: Sequence[bytes], batch: int, now: dt.datetime
) -> float:
    """Packets per second the opener alone reaches on `blobs`, in batches of `batch`."""
    started = time.perf_counter()
    for i in range(0, len(blobs), batch):
        results = opener.open_batch(list(blobs[i : i + batch]), now)
        if any(not isinstance(r, packet.OpenedPacket) for r in results):
            raise RuntimeError("the bench's own packets must open")
    return len(blobs) / (time.perf_counter() - started)


async def _stream(host: str, port: int, blobs: Sequence[bytes]) -> int:
    """Pipeline frames on one connection while reading the acks; the number ACCEPTED."""
    reader, writer = await asyncio.open_connection(host, port)

    async def send() -> None:
        for i in range(0, len(blobs), 64):
            writer.write(encode_frames(blobs[i : i + 64]))
            await writer.drain()

    sending = asyncio.create_task(send())
    acks = await reader.readexactly(len(blobs))
    await sending
    writer.close()
    return acks.count(Ack.ACCEPTED.value)


def _tcp_sender(
    host: str, port: int, slices: list[list[bytes]], out: multiprocessing.Queue[int]
) -> None:
    async def main() -> int:
        return sum(await asyncio.gather(*(_stream(host, port, s) for s in slices)))

    out.put(asyncio.run(main()))


def _mqtt_sender(
    url: str, prefix: str, slices: list[Wire], out: multiprocessing.Queue[int]
) -> None:
    from meterseal.acquisition.mqtt import MqttLink

    # Meters as the simulator runs them (each on its own topic, resending what stays
    # unanswered), one broker connection per slice, MQTT_INFLIGHT packets unanswered at most.
    meters_at_once = max(1, MQTT_INFLIGHT // (MQTT_WINDOW * len(slices)))

    async def link_run(wire: Wire) -> int:
        link = MqttLink(url, prefix=prefix)
        try:
            report = await run_fleet(wire, link, concurrency=meters_at_once, window=MQTT_WINDOW)
        finally:
            await link.close()
        return report.acks["accepted"]

    async def main() -> int:
        return sum(await asyncio.gather(*(link_run(s) for s in slices)))

    out.put(asyncio.run(main()))


async def _attach_mqtt(headend: HeadEnd) -> str:
    """Subscribe the head-end at the broker under names of this run; returns the topic prefix."""
    from meterseal.acquisition.mqtt import MqttLimits, MqttReceiver

    # Fresh names and a short-lived session: a persistent session left by `serve` or an
    # earlier run would otherwise hand this run old messages, or take a share of its own.
    tag = uuid.uuid4().hex[:12]
    prefix = f"meterseal-bench/{tag}"
    receiver = MqttReceiver(
        headend.ingest,
        MQTT_URL,
        limits=MqttLimits(session_expiry=60),
        client_id=f"meterseal-bench-{tag}",
        group=f"bench{tag}",
        prefix=prefix,
    )
    await receiver.start()
    headend.receivers["mqtt"] = receiver  # stopped with the head-end
    return prefix


async def _sender_process(target: Callable[..., None], *args: object) -> tuple[int, float]:
    """Run `target(*args, out)` in a forked process: (packets ACCEPTED, seconds it took)."""
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[int] = context.Queue()
    sender = context.Process(target=target, args=(*args, out))
    started = time.perf_counter()
    sender.start()
    while True:
        try:
            accepted = await asyncio.to_thread(out.get, True, 1.0)
            break
        except queue.Empty:
            if not sender.is_alive():
                died = f"the sender process died (exit code {sender.exitcode})"
                raise RuntimeError(died) from None
    elapsed = time.perf_counter() - started
    await asyncio.to_thread(sender.join)
    return accepted, elapsed


def interleaved(wire: Wire) -> list[bytes]:
    """Every meter's first packet, then every second one, …: the order meters would send in."""
    longest = max(map(len, wire.values()), default=0)
    return [p[i][1] for i in range(longest) for p in wire.values() if i < len(p)]


async def _end_to_end(headend: HeadEnd, transport: str, wire: Wire, connections: int) -> float:
    """Seconds from the first packet sent to the last one acknowledged durable."""
    blobs = interleaved(wire)
    endpoints = await headend.start()
    try:
        if transport == "inproc":
            from meterseal.acquisition.stages import Incoming

            gate = asyncio.Semaphore(4096)

            async def submit(data: bytes) -> Ack:
                async with gate:
                    return await headend.ingest.submit(Incoming(data, time.time(), "inproc"))

            started = time.perf_counter()
            acks = await asyncio.gather(*(submit(b) for b in blobs))
            elapsed = time.perf_counter() - started
            accepted = sum(a is Ack.ACCEPTED for a in acks)
        elif transport == "mqtt":
            prefix = await _attach_mqtt(headend)
            meters = list(wire.items())
            by_link = [dict(meters[i::connections]) for i in range(connections)]
            accepted, elapsed = await _sender_process(_mqtt_sender, MQTT_URL, prefix, by_link)
        else:
            host, port = endpoints["tcp"].rsplit(":", 1)
            slices = [blobs[i::connections] for i in range(connections)]
            accepted, elapsed = await _sender_process(_tcp_sender, host, int(port), slices)
        if accepted != len(blobs):
            raise RuntimeError(f"only {accepted} of {len(blobs)} packets were accepted")
        return elapsed
    finally:
        await headend.stop()


def run_suite(
    console: Console,
    suite: CipherSuite,
    *,
    store_kind: str,
    transport: str,
    meters: int,
    readings: int,
    open_workers: int,
    batch_size: int = 512,
    connections: int = 16,
) -> IngestResult:
    """Provision, seal, then measure the open-only bound and the end-to-end rate of one suite."""
    if transport not in TRANSPORTS:
        raise ValueError(f"bench ingest measures {', '.join(TRANSPORTS)}, not {transport}")
    now = dt.datetime.now(dt.UTC)
    headend = HeadEndKeys.generate()
    ca_key, ca_cert = certs.create_ca("bench CA", now=now, rng=os.urandom)
    fleet = provision(ca_key, ca_cert, meters, suite, now=now, prefix="BENCH")
    start = (int(now.timestamp()) // INTERVAL - readings) * INTERVAL
    with progress_bar(console) as bar:
        task = bar.add_task(
            f"{suite.name}: meters seal {meters * readings:,} readings", total=meters
        )
        wire = seal_workload(
            Workload(fleet, headend.public(), start, readings),
            now=now,
            progress=lambda n: bar.advance(task, n),
        )
    # Interleave meters as they would arrive, not one meter's month after another's.
    blobs = interleaved(wire)
    records = fleet_records(ca_cert, fleet)
    with scratch_store(store_kind) as url, Store.open(url) as store:
        store.register_meters(records, now=now)
        settings = HeadEndSettings(
            tcp=None if transport == "mqtt" else "127.0.0.1:0",
            batch_size=batch_size,
            open_workers=open_workers,
        )
        head = HeadEnd(TrustedMaterial(headend, ca_cert, b"b" * 32), store, settings)
        with console.status(f"{suite.name}: open-only bound ({open_workers or 1} process(es))"):
            opener = ParallelOpener(headend, head.registry, max(open_workers, 1))
            try:
                bound = open_bound(opener, blobs, batch_size, now)
            finally:
                opener.close()
        with console.status(f"{suite.name}: end to end over {transport} into {store_kind}"):
            seconds = asyncio.run(_end_to_end(head, transport, wire, connections))
        report = head.report()
        stored = store.counters().get("stored", 0)
    if stored != len(blobs):
        raise RuntimeError(f"{stored} stored, {len(blobs)} sent")
    return IngestResult(
        suite.name,
        store_kind,
        transport,
        len(blobs),
        open_workers,
        bound,
        len(blobs) / seconds,
        report.latency_p50,
        report.latency_p99,
        stored,
    )


def result_table(results: Sequence[IngestResult], machine: Machine) -> TextTable:
    """Packets/s end to end beside the open-only bound, and latency."""
    rows = [
        (
            r.suite,
            r.store,
            r.transport,
            f"{r.packets:,}",
            str(r.open_workers),
            f"{r.bound_per_s:,.0f}",
            f"{r.end_to_end_per_s:,.0f}",
            f"{r.ratio:.0%}",
            milliseconds(r.latency_p50),
            milliseconds(r.latency_p99),
            pass_fail(r.ratio >= TARGET_SHARE) if r.suite == TARGET_SUITE else "no target",
        )
        for r in results
    ]
    judged = [r.ratio >= TARGET_SHARE for r in results if r.suite == TARGET_SUITE]
    return TextTable(
        "Ingest: sent → durable, against the open-only bound of the same run",
        (
            "suite",
            "store",
            "transport",
            "packets",
            "open procs",
            "open-only/s",
            "end to end/s",
            "e2e/bound",
            "latency p50",
            "latency p99",
            f"≥ {TARGET_SHARE:.0%} of bound",
        ),
        rows,
        (f"{machine.cpu} ({cpu_features()}), {machine.cpus} CPUs, load {machine.load[0]:.2f}",),
        Verdict(
            f"{TARGET_SUITE} end to end ≥ {TARGET_SHARE:.0%} of the open-only bound on every store",
            all(judged) if judged else None,
        ),
    )


def cpu_features() -> str:
    """The CPU flags that move these figures most (OpenSSL uses AVX-512 IFMA for RSA)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return "flags unknown"
    wanted = ("sha_ni", "vaes", "avx2", "avx512f", "avx512ifma")
    return " ".join(f for f in wanted if f in flags) or "no SHA-NI/AVX"


def plot_ingest(results: Sequence[IngestResult], path: Path) -> Path:
    """Bars: open-only bound and end to end per configuration; the latency beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.suite}\n{r.store}/{r.transport}" for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(3, 2))
    x = range(len(results))
    left.bar([i - 0.2 for i in x], [r.bound_per_s for r in results], 0.4, label="open-only bound")
    left.bar([i + 0.2 for i in x], [r.end_to_end_per_s for r in results], 0.4, label="end to end")
    for i, r in enumerate(results):
        left.annotate(f"{r.ratio:.0%}", (i + 0.2, r.end_to_end_per_s), ha="center", va="bottom")
    left.set_xticks(list(x), labels)
    left.set_ylabel("packets per second")
    left.set_title(f"sent → durable, share of the bound reached (target ≥ {TARGET_SHARE:.0%})")
    left.legend(loc="upper right", fontsize=8)
    right.bar([i - 0.2 for i in x], [(r.latency_p50 or 0) * 1e3 for r in results], 0.4, label="p50")
    right.bar([i + 0.2 for i in x], [(r.latency_p99 or 0) * 1e3 for r in results], 0.4, label="p99")
    right.set_xticks(list(x), labels)
    right.set_yscale("log")  # the paper suite's seconds beside p256's milliseconds
    right.set_ylabel("ms, received → durable (log)")
    right.set_title("acquisition latency under full load")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
