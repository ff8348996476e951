"""`meterseal bench trusted-overhead`: the SGX billing paper's experiment 3.1, inside vs outside.

The paper timed RSA-2048, SHA-256 and SHA-512 against input size inside and outside an SGX
enclave and reported 2.25x (RSA) and 11.6x (SHA) overhead inside. Here "inside" is a trusted
worker process started by the trust runtime: it measures itself, attests (simulated
backend), and gets its RSA-2048 key from a real CAS (HTTP, SQLite state) before it times
anything. "Outside" is the same kind of process, started the same way, given the same key
directly. Both run `bench.crypto`'s experiment 3.1 ops, pinned to the same CPU; the parent
interleaves their batches (run by run, op by op, alternating which goes first), so both see
the same background load. The medians of the runs count.

The simulated backend adds no enclave: no memory encryption, no enclave transitions, no EPC
paging. Its ratios are therefore ~1.0 by construction; what the bench shows is that the
trusted runtime costs nothing once started (and how long starting takes), not what SGX,
TDX or SEV-SNP would cost.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rich.console import Console

from meterseal.bench import trusted_worker
from meterseal.bench.crypto import PAPER_SGX_FACTOR, PAPER_SIZES, RSA_BITS, SIZE_OPS
from meterseal.bench.timing import RUNS, WARMUP_SHARE, Machine, Timing, usec
from meterseal.errors import MetersealError
from meterseal.runtime.http import ThreadedServer
from meterseal.storage import Store
from meterseal.trust.api import create_cas_app
from meterseal.trust.attestation import NO_HARDWARE, SimulatedVerifier, init_simulated_platform
from meterseal.trust.cas import Cas
from meterseal.trust.cas_store import CasStore
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.sealing import init_sealing_secret
from meterseal.trust.vault import Vault, init_master_key
from meterseal.ui import TextTable, Verdict, print_table, print_written, progress_bar

PLOT_NAME = "bench-trusted-overhead.png"
MODES = ("outside", "inside")
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class OverheadPoint:
    """One op at one input size: seconds per whole input outside and inside the worker."""

    op: str
    size: int
    outside: Timing
    inside: Timing

    @property
    def ratio(self) -> float:
        """Inside time / outside time (medians): the trusted worker's overhead factor."""
        return self.inside.median / self.outside.median


@dataclass(frozen=True)
class OverheadResult:
    """Everything one run measured."""

    machine: Machine
    points: tuple[OverheadPoint, ...]
    startup: dict[str, Any]  # the inside worker's measurement and start-up times
    seconds: float
    runs: int
    plot: Path

    def ratio(self, op: str) -> float:
        """Geometric mean over the sizes of one op's inside/outside ratio."""
        ratios = [p.ratio for p in self.points if p.op == op]
        return math.exp(statistics.fmean(math.log(r) for r in ratios))


class _Worker:
    """One spawned worker process and its pipe."""

    def __init__(self, mode: str, setup: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self.mode = mode
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=trusted_worker.serve, args=(child, mode, setup), name=f"bench-{mode}"
        )
        self.process.start()
        child.close()

    def ask(self, *message: Any, timeout: float = START_TIMEOUT) -> Any:
        """Send `message` (if any) and return the worker's answer; MetersealError if it fails."""
        try:
            if message:
                self.conn.send(message)
            if not self.conn.poll(timeout):
                raise MetersealError(f"the {self.mode} worker did not answer within {timeout:g} s")
            status, value = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise MetersealError(
                f"the {self.mode} worker exited (code {self.process.exitcode})"
            ) from None
        if status != "ok":
            raise MetersealError(f"the {self.mode} worker failed: {value}")
        return value

    def stop(self) -> None:
        """Ask the worker to stop; kill it if it does not."""
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


@contextmanager
def _cas(directory: Path, key: bytes, sizes: Sequence[int]) -> Iterator[str]:
    """A CAS (SQLite state, HTTP in a thread) that releases the bench key to its stage."""
    init_master_key(directory)
    init_simulated_platform(directory)
    init_sealing_secret(directory)
    with Store.open(f"sqlite:///{directory / 'cas.db'}") as store:
        verifier = SimulatedVerifier.from_deployment(directory)
        cas = Cas(CasStore(store), Vault.from_deployment(directory), [verifier])
        cas.put_secret(trusted_worker.RSA_SECRET, key)
        measurement = stage_measurement(trusted_worker.STAGE, trusted_worker.stage_config(sizes))
        cas.allow(trusted_worker.STAGE, measurement, [trusted_worker.RSA_SECRET])
        with ThreadedServer(create_cas_app(cas)) as url:
            yield url


def _measure(
    console: Console, workers: dict[str, _Worker], sizes: Sequence[int], seconds: float, runs: int
) -> tuple[OverheadPoint, ...]:
    cases = [(op, size) for size in sizes for op in SIZE_OPS]
    calls = {}
    for op, size in cases:
        estimate = workers["outside"].ask("calibrate", op, size, seconds * WARMUP_SHARE)
        workers["inside"].ask("calibrate", op, size, seconds * WARMUP_SHARE)
        calls[(op, size)] = max(1, round(seconds / runs / estimate))
    samples: dict[tuple[str, str, int], list[float]] = {
        (mode, op, size): [] for mode in MODES for op, size in cases
    }
    with progress_bar(console) as bar:
        task = bar.add_task("inside vs outside", total=runs * len(cases))
        for run in range(runs):
            order = MODES if run % 2 == 0 else MODES[::-1]
            for op, size in cases:
                for mode in order:
                    value = workers[mode].ask("time", op, size, calls[(op, size)])
                    samples[(mode, op, size)].append(value)
                bar.advance(task)
    return tuple(
        OverheadPoint(
            op,
            size,
            Timing(tuple(samples[("outside", op, size)]), calls[(op, size)]),
            Timing(tuple(samples[("inside", op, size)]), calls[(op, size)]),
        )
        for op, size in cases
    )


def run_trusted_overhead(
    console: Console,
    *,
    seconds: float = 0.5,
    sizes: Sequence[int] = PAPER_SIZES,
    runs: int = RUNS,
    out_dir: Path,
) -> OverheadResult:
    """Start a CAS and both workers, time every op and size, print tables, write the plot."""
    from meterseal.bench.trusted_plot import plot_overhead

    with console.status(f"generating the RSA-{RSA_BITS} key"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    with (
        tempfile.TemporaryDirectory(prefix="ms-trusted-") as tmp,
        _cas(Path(tmp), der, sizes) as url,
    ):
        setup = {"cpu": cpu, "sizes": list(sizes), "cas_url": url, "deployment": tmp}
        workers = {"outside": _Worker("outside", setup | {"key": der})}
        workers["inside"] = _Worker("inside", setup)
        try:
            with console.status("starting the workers (inside: measure, attest, fetch)"):
                workers["outside"].ask()
                startup = workers["inside"].ask()
            points = _measure(console, workers, sizes, seconds, runs)
        finally:
            for worker in workers.values():
                worker.stop()
    result = OverheadResult(Machine.probe(cpu), points, startup, seconds, runs, out_dir / PLOT_NAME)
    for table in tables(result):
        print_table(console, table)
    plot_overhead(result, result.plot)
    print_written(console, "plot", result.plot)
    return result


def overhead_table(result: OverheadResult) -> TextTable:
    """µs per whole input, outside and inside, and their ratio, per op and size."""
    sizes = sorted({p.size for p in result.points})
    by = {(p.op, p.size): p for p in result.points}
    rows = []
    for op, label in SIZE_OPS.items():
        rows.append((f"{label} outside", *(usec(by[(op, s)].outside.median) for s in sizes), ""))
        rows.append((f"{label} inside", *(usec(by[(op, s)].inside.median) for s in sizes), ""))
        rows.append(
            (
                f"{label} inside/outside",
                *(f"{by[(op, s)].ratio:.2f}x" for s in sizes),
                f"{PAPER_SGX_FACTOR[op]}x",
            )
        )
    headers = ("µs per input", *(f"{s:,} B" for s in sizes), "paper SGX/native")
    notes = (
        "inside: a trusted worker process (measured, attested by the simulated backend, its "
        "RSA-2048 key released by the CAS); outside: the same process kind, key given directly",
        f"both pinned to one CPU, batches interleaved; medians of {result.runs} runs",
        f"{NO_HARDWARE}: no enclave, so no memory encryption or enclave transitions to pay for",
        result.machine.line(),
    )
    title = "SGX paper experiment 3.1 inside vs outside a trusted worker, µs per whole input"
    verdict = Verdict("reference figures: the paper's experiment 3.1 in a trusted worker", None)
    return TextTable(title, headers, rows, notes, verdict)


def summary_table(result: OverheadResult) -> TextTable:
    """Our overhead factor per op against the paper's."""
    rows = [
        (label, f"{result.ratio(op):.2f}x", f"{PAPER_SGX_FACTOR[op]}x")
        for op, label in SIZE_OPS.items()
    ]
    start = result.startup
    notes = (
        "ours: geometric mean over the input sizes of inside/outside (medians)",
        "paper: SGX enclave vs native on an i7-6700 (its text; the figure is missing)",
        f"trusted worker start (once per process): measure {start['measure_seconds'] * 1e3:.0f} "
        f"ms, attest + fetch from the CAS {start['fetch_seconds'] * 1e3:.0f} ms; measurement "
        f"{start['measurement'][:16]}…; {start['assurance']}",
    )
    verdict = Verdict("reference figures: our overhead factor beside the paper's", None)
    return TextTable(
        "Overhead inside a trusted worker", ("operation", "ours", "paper"), rows, notes, verdict
    )


def tables(result: OverheadResult) -> list[TextTable]:
    """Every table of a run, in print order."""
    return [overhead_table(result), summary_table(result)]
