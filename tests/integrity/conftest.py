"""Integrity fixtures: the meter built with gcc, traced and embedded, run under the monitor.

Everything here is a real process: gcc builds the meter and its attack variants, the tracer
records its behaviour traces, objcopy embeds them, and the monitor ptraces it with the seccomp
filter. Where the machine forbids ptrace or seccomp (or has no gcc/objcopy), the tests that
need them skip and say why.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meterseal.integrity.auditlog import AuditLog, LogContents, replay
from meterseal.integrity.build import VARIANTS, build_meter
from meterseal.integrity.embed import embed
from meterseal.integrity.errors import IntegrityError
from meterseal.integrity.monitor import Monitor, MonitorResult
from meterseal.integrity.platform_key import PlatformKey
from meterseal.integrity.recording import record_run
from meterseal.integrity.trace import TraceModel, TraceRecorder
from meterseal.integrity.tracer import Decision, Tracer

RUN_TIMEOUT = 30.0


class _Probe:
    def launched(self, pid: int) -> Decision:
        return Decision.CONTINUE

    def syscall(self, *args: object) -> Decision:
        return Decision.CONTINUE

    def spawned(self, *args: object) -> Decision:
        return Decision.CONTINUE

    def execed(self, pid: int) -> None:
        pass

    def exited(self, pid: int) -> None:
        pass


def _monitor_unavailable() -> str | None:
    """Why the monitor cannot run here, or None if it can."""
    if platform.machine() != "x86_64":
        return f"the monitor decodes x86-64 registers; this is {platform.machine()}"
    for tool in ("gcc", "objcopy"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    true = shutil.which("true")
    if true is None:
        return "no `true` program to probe ptrace with"
    try:
        outcome = Tracer([true], timeout=10).run(_Probe())
    except (IntegrityError, OSError) as exc:
        return f"ptrace/seccomp are forbidden here: {exc}"
    if outcome.exit_code != 0:
        return f"a traced `true` did not run (ptrace or seccomp forbidden?): {outcome}"
    return None


@pytest.fixture(scope="session")
def monitor_ready() -> None:
    """Skip (with the reason) where ptrace, seccomp, gcc or objcopy are missing."""
    reason = _monitor_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def builds(monitor_ready: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The meter and every attack variant, compiled once for the session (not embedded)."""
    out = tmp_path_factory.mktemp("builds")
    built = {"meter": build_meter(out / "meter")}
    for variant in VARIANTS:
        built[variant] = build_meter(out / f"meter-{variant}", variant)
    return built


@pytest.fixture(scope="session")
def platform_key() -> PlatformKey:
    """The software platform key for the session."""
    return PlatformKey.generate()


def sensor_values(seed: int, lines: int) -> str:
    """A sensor source of `lines` power values in watts (deterministic per seed)."""
    return "".join(f"{(seed * 7919 + i * 104729) % 3000 + 50}\n" for i in range(lines))


@dataclass
class Lab:
    """A working directory with a sensor source, registers, a UDP head-end and a log."""

    root: Path
    key: PlatformKey
    sink: socket.socket
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "audit.log"

    @property
    def headend(self) -> str:
        """Where the meter sends readings (a socket of this test)."""
        host, port = self.sink.getsockname()
        return f"{host}:{port}"

    def argv(
        self,
        binary: Path,
        *,
        sensor: str = "100\n200\n300\n",
        count: int = 12,
        persist: int = 5,
        interval_ms: int = 0,
        name: str = "run",
    ) -> list[str]:
        """A meter command line in a fresh directory of this lab."""
        where = self.root / name
        (where / "registers").mkdir(parents=True, exist_ok=True)
        (where / "sensor.txt").write_text(sensor)
        return [
            str(binary),
            str(where / "sensor.txt"),
            str(where / "registers"),
            self.headend,
            str(interval_ms),
            str(count),
            str(persist),
        ]

    def trusted_copy(self, binary: Path, name: str) -> Path:
        """Copy `binary`, record its traces in trusted runs and embed them (offline phase)."""
        copy = self.root / name
        shutil.copy2(binary, copy)
        recorder = TraceRecorder(name)
        with open(os.devnull, "wb") as devnull:
            for count in (25, 3):  # several energy-register writes in one run, one in another
                argv = self.argv(copy, count=count, persist=10, name=f"trace-{name}-{count}")
                outcome = record_run(recorder, argv, stdout=devnull.fileno(), timeout=RUN_TIMEOUT)
                assert outcome.exit_code == 0, outcome
        embed(copy, recorder.model(), self.key)
        return copy

    def monitor(
        self, argv: list[str], *, period: float = 0.0, native: bool = True
    ) -> MonitorResult:
        """Run `argv` under the monitor (in this process) with this lab's audit log."""
        log = AuditLog(self.log_path, self.key)
        try:
            with open(os.devnull, "wb") as devnull:
                return Monitor(argv, self.key, log, period=period, native=native).run(
                    stdout=devnull.fileno(), timeout=RUN_TIMEOUT
                )
        finally:
            log.close()

    def audit(self) -> LogContents:
        """The audit log replayed and checked against the platform key."""
        contents = replay(self.log_path.read_bytes(), self.key)
        assert contents.problems == []
        return contents


@pytest.fixture
def lab(tmp_path: Path, platform_key: PlatformKey) -> Iterator[Lab]:
    """A fresh lab (its own UDP head-end socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield Lab(tmp_path, platform_key, sink)


@pytest.fixture
def meter(lab: Lab, builds: dict[str, Path]) -> Path:
    """The benign meter, traced and embedded in this lab."""
    return lab.trusted_copy(builds["meter"], "meter")


def trace_of(path: Path) -> TraceModel:
    """The trace model embedded in a program file (unverified, for inspection)."""
    from meterseal.integrity.elfimage import ElfLayout, section_bytes
    from meterseal.integrity.section import extract

    data = path.read_bytes()
    return extract(section_bytes(data, ElfLayout.parse(data))).trace
