"""Helpers shared by the benches: seconds per call and the machine they were measured on.

Each callable is warmed up and calibrated alone, then every run times one batch of each in
turn, so all of them see the same clock speed and background load; the median run counts.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend

Op = Callable[[], object]
RUNS = 15
WARMUP_SHARE = 0.1


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one operation: each run's mean, and the calls per run."""

    runs: tuple[float, ...]
    calls: int

    @property
    def median(self) -> float:
        """Median over the runs of the seconds per call."""
        return statistics.median(self.runs)

    @property
    def best(self) -> float:
        """Fastest run's seconds per call: the least disturbed by other processes."""
        return min(self.runs)

    @property
    def per_second(self) -> float:
        """Calls per second at the median."""
        return 1.0 / self.median

    @property
    def spread(self) -> float:
        """(slowest - fastest run) / median: how steady the measurement was."""
        return (max(self.runs) - min(self.runs)) / self.median


def calibrate(op: Op, budget: float) -> float:
    """Warm `op` up for `budget` seconds (first call untimed); estimated seconds per call."""
    op()
    calls, start = 0, time.perf_counter()
    while True:
        op()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return elapsed / calls


def per_call(op: Op, calls: int) -> float:
    """Mean seconds per call over `calls` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        op()
    return (time.perf_counter() - start) / calls


def measure_group(
    ops: Mapping[str, Op],
    seconds: float,
    *,
    runs: int = RUNS,
    on_batch: Callable[[str], None] | None = None,
) -> dict[str, Timing]:
    """Time each op for about `seconds` in total, as `runs` interleaved batches per op."""
    calls = {
        name: max(1, round(seconds / runs / calibrate(op, seconds * WARMUP_SHARE)))
        for name, op in ops.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(runs):
        for name, op in ops.items():
            samples[name].append(per_call(op, calls[name]))
            if on_batch is not None:
                on_batch(name)
    return {name: Timing(tuple(samples[name]), calls[name]) for name in ops}


def measure(op: Op, seconds: float, *, runs: int = RUNS) -> Timing:
    """Time one op for about `seconds` (median of `runs` batches)."""
    return measure_group({"op": op}, seconds, runs=runs)["op"]


@contextmanager
def one_core() -> Iterator[int | None]:
    """Pin this process to a single CPU while measuring (Linux); yields the CPU or None."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass(frozen=True)
class Machine:
    """Where the timings were taken."""

    platform: str
    cpu: str
    cpus: int
    pinned_cpu: int | None
    python: str
    cryptography: str
    openssl: str
    load: tuple[float, float, float]

    @classmethod
    def probe(cls, pinned_cpu: int | None) -> Machine:
        """Describe this machine and interpreter."""
        return cls(
            platform=platform.platform(),
            cpu=_cpu_model(),
            cpus=os.cpu_count() or 1,
            pinned_cpu=pinned_cpu,
            python=f"{platform.python_implementation()} {platform.python_version()}",
            cryptography=cryptography.__version__,
            openssl=openssl_backend.openssl_version_text(),
            load=os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0),
        )

    def line(self) -> str:
        """The machine in one line, for a table's notes."""
        return "; ".join(f"{field}: {value}" for field, value in self.rows())

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) pairs for a table."""
        pinned = "not pinned" if self.pinned_cpu is None else f"pinned to CPU {self.pinned_cpu}"
        return [
            ("platform", self.platform),
            ("CPU", f"{self.cpu} ({self.cpus} logical CPUs; {pinned}, one thread)"),
            ("Python", self.python),
            ("cryptography", f"{self.cryptography} ({self.openssl})"),
            (
                "load average at the end",
                " / ".join(f"{x:.2f}" for x in self.load) + " (1/5/15 min)",
            ),
        ]


def usec(seconds: float) -> str:
    """Seconds as microseconds, with precision to match the magnitude."""
    us = seconds * 1e6
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:,.0f}"
