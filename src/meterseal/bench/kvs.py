"""`meterseal bench kvs`: the secure KVS's Fig. 5 and Fig. 6, a failure run, and its codec.

* Fig. 5: one object per policy and size is put into a store over local-directory nodes; the
  bytes the node directories gain (blob files, counted on disk) are what the policy costs,
  set against `policy.raw_bytes`' prediction.
* Fig. 6: `clients` processes (`kvs_load`), each with its own store over the same node
  directories, put and get objects of 1 KiB to 16 MiB back to back in common windows.
* Failure run: objects stored, one node's directory taken away (reads and a write with the
  node dead), then the node comes back empty (a new disk) and `kvs.repair.scrub` rebuilds it.
* Codec: put and get of a 16 MiB object through the gateway (in its own process, on loopback
  HTTP, a client with a bucket key) and through the store engine alone, on in-memory nodes,
  against AES-GCM and pyeclib alone on the same bytes, interleaved; target: the gateway's put
  and get within 2x of the primitives' sum.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meterseal.bench.kvs_codec import CodecResult, measure_codec
from meterseal.bench.kvs_load import ClientPool, Layout
from meterseal.bench.timing import Machine
from meterseal.kvs.erasure import coder
from meterseal.kvs.policy import (
    parse_policy,
    raw_bytes,
)
from meterseal.kvs.repair import scrub
from meterseal.kvs.store import ObjectStore

KiB, MiB = 1024, 1024 * 1024
POLICIES = ("rep:3", "ec:6+2", "hybrid:6+2")  # the paper's hot, cold and warm examples
BUCKET = "bench"
Step = Callable[[str], None]

if TYPE_CHECKING:
    from meterseal.bench.kvs_nats import NatsResult


@dataclass(frozen=True)
class KvsPlan:
    """What to measure: policies, Fig. 6 sizes, clients, windows, failure and codec sizes."""

    sizes: tuple[int, ...] = (KiB, 16 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB)
    storage_sizes: tuple[int, ...] = (KiB, MiB, 16 * MiB)
    policies: tuple[str, ...] = POLICIES
    clients: int = 8
    seconds: float = 2.0
    nodes: int = 10  # hybrid:6+2 needs 9 distinct nodes; one more lets a write survive a loss
    codec_size: int = 16 * MiB
    codec_seconds: float = 3.0
    failure_objects: int = 12
    failure_size: int = MiB
    quick: bool = False
    nats: bool = False  # Fig. 6 and the failure run again on a local NATS cluster

    def steps(self) -> int:
        """Progress steps: storage puts, Fig. 6 cells (prepare, put, get), failure, codec."""
        fig6 = len(self.policies) * len(self.sizes) * 3
        nats = len(self.policies) * (len(self.sizes) * 3 + 1) if self.nats else 0
        return len(self.policies) * len(self.storage_sizes) + fig6 + len(self.policies) + 1 + nats


QUICK = KvsPlan(
    sizes=(KiB, 256 * KiB),
    storage_sizes=(KiB, 100 * KiB),
    clients=2,
    seconds=0.2,
    codec_size=MiB,
    codec_seconds=0.3,
    failure_objects=3,
    failure_size=64 * KiB,
    quick=True,
)


@dataclass(frozen=True)
class StorageRow:
    """Fig. 5: what the nodes hold for one object of `size` bytes under `policy`."""

    policy: str
    size: int
    held: int  # bytes of the blob files the nodes gained
    disk: int  # the same files' allocated blocks
    blobs: int
    predicted: int  # raw_bytes(policy, size)


@dataclass(frozen=True)
class RateRow:
    """Fig. 6: one operation on objects of `size` under `policy`, all clients together."""

    policy: str
    size: int
    op: str  # put or get
    ops: int
    errors: int
    seconds: float
    error: str | None = None

    @property
    def per_second(self) -> float:
        """Operations per second over the window."""
        return self.ops / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class FailureRow:
    """The failure run of one policy."""

    policy: str
    objects: int
    reads_ok: int  # of `objects`, with one node dead
    healthy_read: float  # seconds to read every object, all nodes up
    degraded_read: float  # the same with one node dead
    write_error: str | None  # a write with the node dead: None when it succeeded
    repair_seconds: float
    rebuilt: int
    healthy_after: bool


@dataclass(frozen=True)
class KvsResult:
    """Everything one run measured."""

    plan: KvsPlan
    storage: list[StorageRow]
    rates: list[RateRow]
    failures: list[FailureRow]
    codec: CodecResult
    machine: Machine
    nats: NatsResult | None = None
    backend: str = field(default_factory=lambda: f"{coder(6, 2).backend} ({coder(6, 2).binding})")


def held_bytes(layout: Layout) -> tuple[int, int, int]:
    """(bytes, allocated bytes, files) of the blob files under the layout's node directories."""
    size = disk = files = 0
    for directory in layout.node_dirs():
        for path in directory.glob("??/*"):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                size, disk, files = size + stat.st_size, disk + stat.st_blocks * 512, files + 1
    return size, disk, files


def measure_storage(root: Path, plan: KvsPlan, step: Step) -> list[StorageRow]:
    """Fig. 5: each policy's and size's bytes on the nodes, against the prediction."""
    rows = []
    for i, text in enumerate(plan.policies):
        layout = Layout(root / f"fig5-{i}", plan.nodes, os.urandom(32))
        store, policy = layout.open(), parse_policy(text)
        for size in plan.storage_sizes:
            before = held_bytes(layout)
            asyncio.run(store.put_bytes(BUCKET, f"object-{size}", os.urandom(size), policy))
            after = held_bytes(layout)
            held, disk, blobs = (a - b for a, b in zip(after, before, strict=True))
            rows.append(StorageRow(text, size, held, disk, blobs, raw_bytes(policy, size)))
            step(f"Fig. 5: {text}, {size:,} bytes")
    return rows


def measure_rates(
    layout: Layout, policies: tuple[str, ...], plan: KvsPlan, step: Step
) -> list[RateRow]:
    """Fig. 6: every client puts, then gets, objects of each size in common windows."""
    rows = []
    with ClientPool(layout, plan.clients) as pool:
        for text in policies:
            for size in plan.sizes:
                pool.run_prepare(text, size)
                step(f"Fig. 6: {text}, {size:,} bytes: objects to read")
                for op in ("put", "get"):
                    results = pool.window(op, text, size, plan.seconds)
                    span = max(r.finished_at for r in results) - results[0].started_at
                    errors = [r.error for r in results if r.error]
                    rows.append(
                        RateRow(
                            text,
                            size,
                            op,
                            sum(r.ops for r in results),
                            sum(r.errors for r in results),
                            span,
                            errors[0] if errors else None,
                        )
                    )
                    step(f"Fig. 6: {text}, {size:,} bytes: {op}")
                pool.clean(text, size)
    return rows


def _kill(directory: Path) -> None:
    """Take a node's directory away and leave a file in its place (mkdir fails: dead)."""
    directory.rename(directory.with_name(directory.name + ".lost"))
    directory.write_bytes(b"")


def _replace(directory: Path) -> None:
    """The node comes back as a new, empty disk."""
    directory.unlink()
    shutil.rmtree(directory.with_name(directory.name + ".lost"))


async def _read_ok(store: ObjectStore, bucket: str, name: str) -> bool:
    try:
        await store.get_bytes(bucket, name)
    except Exception:  # a failed read is what availability counts
        return False
    return True


async def _read_all(store: ObjectStore, bucket: str, names: list[str]) -> tuple[int, float]:
    started, ok = time.perf_counter(), 0
    for name in names:
        ok += await _read_ok(store, bucket, name)
    return ok, time.perf_counter() - started


async def failure_run(
    layout: Layout, text: str, plan: KvsPlan, kill: Callable[[], object], back: Callable[[], object]
) -> FailureRow:
    """Store objects, `kill` a node, read them all and write one, bring it `back` empty and
    time the repair (each policy in its own bucket)."""
    async with layout.session() as store:
        return await _failure(store, text, plan, kill, back)


async def _failure(
    store: ObjectStore,
    text: str,
    plan: KvsPlan,
    kill: Callable[[], object],
    back: Callable[[], object],
) -> FailureRow:
    policy = parse_policy(text)
    bucket = f"failure-{text.replace(':', '-').replace('+', '-')}"
    names = [f"failure/{i}" for i in range(plan.failure_objects)]
    for name in names:
        await store.put_bytes(bucket, name, os.urandom(plan.failure_size), policy)
    _, healthy = await _read_all(store, bucket, names)
    kill()
    ok, degraded = await _read_all(store, bucket, names)
    write_error = None
    try:
        await store.put_bytes(bucket, "failure/during", os.urandom(plan.failure_size), policy)
    except Exception as exc:  # reported in the table
        write_error = str(exc)
    back()
    started = time.perf_counter()
    report = await scrub(store, [bucket], repair=True)
    repair = time.perf_counter() - started
    after = await scrub(store, [bucket], repair=False)
    return FailureRow(
        text,
        len(names),
        ok,
        healthy,
        degraded,
        write_error,
        repair,
        report.repaired,
        after.healthy and after.missing == 0 and after.corrupt == 0,
    )


def measure_failures(root: Path, plan: KvsPlan, step: Step) -> list[FailureRow]:
    """Each policy: reads and a write with one node dead, then repair onto the new disk."""
    rows = []
    for i, text in enumerate(plan.policies):
        layout = Layout(root / f"failure-{i}", plan.nodes, os.urandom(32))
        first = layout.node_dirs()[0]
        row = failure_run(
            layout, text, plan, functools.partial(_kill, first), functools.partial(_replace, first)
        )
        rows.append(asyncio.run(row))
        step(f"failure run: {text}")
    return rows


def run_measurements(plan: KvsPlan, work: Path | None, step: Step) -> KvsResult:
    """Every part of the bench under a fresh directory (removed afterwards)."""
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)  # `--work DIR` names where, not what exists
    with tempfile.TemporaryDirectory(prefix="meterseal-bench-kvs-", dir=work) as tmp:
        root = Path(tmp)
        storage = measure_storage(root, plan, step)
        rates = measure_rates(
            Layout(root / "fig6", plan.nodes, os.urandom(32)), plan.policies, plan, step
        )
        failures = measure_failures(root, plan, step)
        nats = None
        if plan.nats:
            from meterseal.bench.kvs_nats import measure_nats

            nats = measure_nats(root, plan, step)
    codec = measure_codec(plan.codec_size, plan.codec_seconds, 5 if plan.quick else 9)
    step(f"codec: {plan.codec_size:,} bytes against AES-GCM and pyeclib alone")
    return KvsResult(plan, storage, rates, failures, codec, Machine.probe(None), nats=nats)
