"""`meterseal bench integrity`: what the dynamic integrity monitor costs the meter program.

The meter (built with gcc, its trace recorded and embedded) runs an ordinary workload as fast
as it can: COUNT intervals of read sensor → accumulate → write display register → send the
reading over UDP to a local socket, rewriting the energy register every PERSIST intervals.
Four ways, interleaved over several repeats: bare; stopped at the same trapped calls but
resumed at once by the native loop without any judgement (the floor: what the stops alone cost
on this machine, not a mode the monitor offers); under the monitor with the seccomp filter
(only modification behaviours stop the program); and under a monitor that stops it at every
system call (what ptrace-only monitors pay; this run also counts the calls, giving the
system-call rate). The overhead is the median over repeats of each run's time over the bare
run next to it (robust to the load drifting on a shared machine), and the ratio of medians.
Beside it, the cost of one dynamic measurement (f_d, extraction, newHV of the running
process, f_v, f_j) on a live meter, cold (ELF parsed and DSig checked) and warm.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from meterseal.bench.timing import Machine, Timing, measure
from meterseal.integrity import native
from meterseal.integrity.auditlog import AuditLog
from meterseal.integrity.behaviour import Action, Behaviour
from meterseal.integrity.build import build_meter
from meterseal.integrity.elfimage import layout_of
from meterseal.integrity.embed import embed
from meterseal.integrity.judgement import judge
from meterseal.integrity.monitor import Measurer, Monitor
from meterseal.integrity.native import FastPath
from meterseal.integrity.platform_key import PlatformKey
from meterseal.integrity.procfs import ProcView
from meterseal.integrity.reader import Registers
from meterseal.integrity.recording import record_run
from meterseal.integrity.syscalls import Args, Trap
from meterseal.integrity.trace import TraceRecorder
from meterseal.integrity.tracer import Decision, Tracer
from meterseal.ui import TextTable, Verdict, progress_bar

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TARGET_RATIO = 1.1
MODES = (
    "bare",
    "stops only (floor)",
    "monitor (seccomp)",
    "monitor (trap every call)",
)
BARE, FLOOR, MONITOR, TRAP_ALL = MODES


@dataclass(frozen=True)
class ModeResult:
    """One way of running the workload: wall seconds per repeat and what was trapped."""

    name: str
    seconds: tuple[float, ...]
    trapped: int
    syscalls: int
    rechecked: int  # of the trapped calls, those the native loop re-checked and resumed

    @property
    def median(self) -> float:
        """Median wall time of a run."""
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class IntegrityBench:
    """The figures of one `bench integrity` run."""

    intervals: int
    persist_every: int
    modes: dict[str, ModeResult]
    measurement_cold: Timing
    measurement_warm: Timing
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def syscalls(self) -> int:
        """System calls of one run of the workload (counted when every call is trapped)."""
        return self.modes[TRAP_ALL].syscalls

    def ratio(self, mode: str) -> float:
        """Median run time under `mode` over the bare median."""
        return self.modes[mode].median / self.modes[BARE].median

    def paired_ratio(self, mode: str) -> float:
        """Median over repeats of the run under `mode` over the bare run of the same repeat."""
        pairs = zip(self.modes[mode].seconds, self.modes[BARE].seconds, strict=True)
        return statistics.median(run / bare for run, bare in pairs)

    @property
    def ok(self) -> bool:
        """Whether the seccomp-filtered monitor meets the target (paired overhead)."""
        return self.paired_ratio(MONITOR) <= TARGET_RATIO


@dataclass(frozen=True)
class _Setup:
    binary: Path
    key: PlatformKey
    argv: list[str]
    log: Path


def _prepare(work: Path, intervals: int, persist_every: int, port: int) -> _Setup:
    binary = build_meter(work / "meter")
    sensor = work / "sensor.txt"
    sensor.write_text("".join(f"{200 + (i * 37) % 2800}\n" for i in range(1440)))
    registers = work / "registers"
    registers.mkdir()
    key = PlatformKey.generate()
    recorder = TraceRecorder("meter")
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for count in (25, 3):  # one run with several energy-register writes, one with one
            argv = [str(binary), str(sensor), str(registers), f"127.0.0.1:{port}", "0", str(count)]
            record_run(recorder, [*argv, "10"], stdout=devnull, timeout=60)
    finally:
        os.close(devnull)
    embed(binary, recorder.model(), key)
    argv = [str(binary), str(sensor), str(registers), f"127.0.0.1:{port}", "0"]
    return _Setup(binary, key, [*argv, str(intervals), str(persist_every)], work / "audit.log")


Run = tuple[float, int, int, int]  # seconds, trapped, syscalls, re-checked natively


def _bare(setup: _Setup) -> Run:
    start = time.perf_counter()
    subprocess.run(setup.argv, stdout=subprocess.DEVNULL, check=True)  # noqa: S603 - our build
    return time.perf_counter() - start, 0, 0, 0


class _Unjudged:
    """The floor's handler: every stop the native loop hands over is let go."""

    def launched(self, pid: int) -> Decision:
        return Decision.CONTINUE

    def syscall(self, pid: int, trap: Trap, args: Args, regs: Registers) -> Decision:
        return Decision.CONTINUE

    def spawned(self, pid: int, child: int, regs: Registers) -> Decision:
        return Decision.CONTINUE

    def execed(self, pid: int) -> None:
        pass

    def exited(self, pid: int) -> None:
        pass


def _floor(setup: _Setup) -> Run:
    devnull = os.open(os.devnull, os.O_WRONLY)
    fastpath = FastPath(unsafe_resume_all=True)
    try:
        start = time.perf_counter()
        outcome = Tracer(setup.argv, stdout=devnull, timeout=600, fastpath=fastpath).run(
            _Unjudged()
        )
        elapsed = time.perf_counter() - start
    finally:
        fastpath.close()
        os.close(devnull)
    if outcome.exit_code != 0:
        raise RuntimeError(f"the workload failed under the bare tracer: {outcome}")
    return elapsed, outcome.trapped, outcome.syscalls, 0


def _monitored(setup: _Setup, trap_all: bool) -> Run:
    devnull = os.open(os.devnull, os.O_WRONLY)
    log = AuditLog(setup.log, setup.key)
    try:
        start = time.perf_counter()
        result = Monitor(setup.argv, setup.key, log, period=1.0).run(
            stdout=devnull, timeout=600, trap_all=trap_all
        )
        elapsed = time.perf_counter() - start
    finally:
        log.close()
        os.close(devnull)
    if result.malicious is not None or result.outcome.exit_code != 0:
        raise RuntimeError(f"the benign workload was not trusted: {result.malicious}")
    outcome = result.outcome
    return elapsed, outcome.trapped, outcome.syscalls, outcome.rechecked


def _measurement_cost(setup: _Setup, seconds: float) -> tuple[Timing, Timing]:
    """Seconds for one judgement of a behaviour on a live (sleeping) meter process."""
    argv = [*setup.argv[:4], "1000", "100000", "1000"]  # one interval a second: it waits
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603 - our build
    try:
        time.sleep(0.2)  # past the dynamic loader
        view = ProcView(process.pid)
        behaviour = Behaviour(
            "${exe}",
            "_start > main > persist_energy > write_energy_file",
            Action.OPEN_WRITE,
            "${arg2}/energy.reg",
        )

        def once(measurer: Measurer) -> None:
            m = judge(
                behaviour,
                (),
                lambda: measurer.extract(process.pid),
                lambda: measurer.measure(process.pid, view),
                pid=process.pid,
                trigger="behaviour",
                now_ms=0,
            )
            if m.f_v is not True:
                raise RuntimeError(f"the live meter did not verify: {m.reason}")

        def cold_once() -> None:
            layout_of.cache_clear()  # parse the ELF file again, as a first measurement does
            once(Measurer(setup.key))

        warm = Measurer(setup.key)
        cold = measure(cold_once, seconds, runs=5)
        hot = measure(lambda: once(warm), seconds, runs=5)
        view.close()
    finally:
        process.kill()
        process.wait()
    return cold, hot


def run_integrity(
    console: Console,
    *,
    intervals: int = 200_000,
    persist_every: int = 1000,
    repeats: int = 5,
    measure_seconds: float = 1.0,
) -> IntegrityBench:
    """Build, trace and embed the meter, then time the three modes and one measurement."""
    with (
        tempfile.TemporaryDirectory(prefix="meterseal-bench-integrity-") as tmp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
    ):
        sink.bind(("127.0.0.1", 0))  # readings land here; a full buffer only drops them
        setup = _prepare(Path(tmp), intervals, persist_every, sink.getsockname()[1])
        native.library()  # built once, before anything is timed
        ways: dict[str, Callable[[], Run]] = {
            BARE: lambda: _bare(setup),
            FLOOR: lambda: _floor(setup),
            MONITOR: lambda: _monitored(setup, trap_all=False),
            TRAP_ALL: lambda: _monitored(setup, trap_all=True),
        }
        runs: dict[str, list[Run]] = {m: [] for m in MODES}
        load_before = os.getloadavg()
        with progress_bar(console) as bar:
            task = bar.add_task("meter workload, four ways", total=repeats * len(MODES))
            for _ in range(repeats):
                for name, way in ways.items():
                    runs[name].append(way())
                    bar.advance(task)
        load_after = os.getloadavg()
        cold, warm = _measurement_cost(setup, measure_seconds)
    modes = {
        name: ModeResult(name, tuple(r[0] for r in rs), rs[-1][1], rs[-1][2], rs[-1][3])
        for name, rs in runs.items()
    }
    return IntegrityBench(
        intervals, persist_every, modes, cold, warm, load_before=load_before, load_after=load_after
    )


def result_table(bench: IntegrityBench, machine: Machine) -> TextTable:
    """The run times, system-call rates and overheads, and the measurement cost, as a table."""
    rows = []
    for name in MODES:
        mode = bench.modes[name]
        rate = bench.syscalls / mode.median
        rows.append(
            (
                name,
                f"{mode.median * 1000:,.0f} ms",
                f"{bench.syscalls:,}",
                f"{rate:,.0f}/s",
                f"{mode.trapped:,}",
                f"{mode.rechecked:,}",
                f"{bench.paired_ratio(name):.3f}x",
                f"{bench.ratio(name):.3f}x",
            )
        )
    load = " → ".join(
        "/".join(f"{x:.1f}" for x in avg) for avg in (bench.load_before, bench.load_after)
    )
    notes = (
        f"workload: {bench.intervals:,} intervals, energy register rewritten every "
        f"{bench.persist_every:,}; {len(bench.modes[BARE].seconds)} interleaved repeats; "
        "overhead: median of each run over the bare run of its repeat",
        f"seccomp-filtered monitor {bench.paired_ratio(MONITOR):.3f}x (ratio of medians "
        f"{bench.ratio(MONITOR):.3f}x); the stops "
        f"alone cost {bench.paired_ratio(FLOOR):.3f}x here",
        f"one dynamic measurement (f_d, extraction, newHV of the live process, f_v, f_j): "
        f"cold {bench.measurement_cold.median * 1e6:,.0f} µs (ELF parsed, DSig verified), "
        f"warm {bench.measurement_warm.median * 1e6:,.0f} µs",
        f"{machine.cpu}, {machine.cpus} CPUs, {machine.platform}, {machine.python}; "
        f"load average (1/5/15 min) {load}",
    )
    return TextTable(
        "Integrity monitor overhead",
        (
            "mode",
            "run time",
            "syscalls/run",
            "syscall rate",
            "stops",
            "re-checked natively",
            "overhead",
            "ratio of medians",
        ),
        rows,
        notes,
        Verdict(f"the seccomp-filtered monitor's overhead ≤ {TARGET_RATIO}x", bench.ok),
    )


def plot_integrity(bench: IntegrityBench, path: Path) -> Path:
    """Bars of run time per mode with the overhead ratio; the measurement cost beside."""
    fig = integrity_figure(bench)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def integrity_figure(bench: IntegrityBench) -> Figure:
    """The bench's figure: overhead per mode against the target line, the measurement cost."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    medians = [bench.modes[m].median * 1000 for m in MODES]
    left.bar(range(len(MODES)), medians, color=("#8da0cb", "#b3b3b3", "#66c2a5", "#fc8d62"))
    # Each ratio inside its bar's top: above it, a bar within ~10% of bare sat on the target line.
    for i, name in enumerate(MODES):
        left.annotate(
            f"{bench.paired_ratio(name):.2f}x",
            (i, medians[i]),
            xytext=(0, -4),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=8,
            fontweight="bold",
        )
    target = medians[0] * TARGET_RATIO
    left.axhline(target, color="#444444", linestyle="--", linewidth=1)
    # Named on the line itself, above its left end, over the bare bar (always under the line):
    # the legend box it had hid the labels of the bars near the target.
    left.annotate(
        f"target: {TARGET_RATIO}x bare ({target:,.0f} ms)",
        (0.0, target),
        xycoords=("axes fraction", "data"),
        xytext=(3, 3),
        textcoords="offset points",
        ha="left",
        va="bottom",
        fontsize=8,
        color="#444444",
    )
    left.set_xticks(range(len(MODES)), [m.replace(" (", "\n(") for m in MODES])
    left.set_ylabel("ms per run (median)")
    left.set_title(
        f"meter workload, {bench.intervals:,} intervals, {len(bench.modes[BARE].seconds)} "
        "repeats (labels: overhead vs bare)"
    )
    costs = [bench.measurement_cold.median * 1e6, bench.measurement_warm.median * 1e6]
    right.bar((0, 1), costs, color=("#e78ac3", "#a6d854"))
    right.set_xticks((0, 1), ("cold\n(parsed, DSig verified)", "warm\n(cached)"))
    right.set_ylabel("µs per dynamic measurement")
    right.set_title("one measurement of a live process")
    return fig
