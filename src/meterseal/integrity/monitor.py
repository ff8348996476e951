"""Run time: the process monitor (paper section 3.4) on a real process, via the tracer.

Each modification behaviour the seccomp filter traps, the creation of a process and the
launch itself go through `judgement.judge`: extraction of T from the program file the process
runs (/proc/PID/exe), f_d against T, newHV of the file with the process's mapped read-only
segments, f_v, f_j. A malicious verdict kills the process (and everything it started) before
the behaviour's system call runs. Every judgement is appended to the security audit log.
With `period` > 0 a thread also measures the running process on a timer (our addition: a
patch in memory is found even if the program makes no further modification behaviour).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meterseal.integrity.auditlog import AuditLog, LogWriter
from meterseal.integrity.behaviour import Behaviour, Placeholders
from meterseal.integrity.errors import IntegrityError
from meterseal.integrity.judgement import Measurement, Verdict, judge
from meterseal.integrity.measurer import Measurer
from meterseal.integrity.platform_key import PlatformKey
from meterseal.integrity.procfs import ProcView
from meterseal.integrity.reader import BehaviourReader, Registers
from meterseal.integrity.section import IntegritySection
from meterseal.integrity.syscalls import Args, Trap
from meterseal.integrity.trace import Key
from meterseal.integrity.tracer import Decision, Outcome, Tracer

VerdictHook = Callable[[Measurement], None]
__all__ = ["Measurer", "Monitor", "MonitorResult", "VerdictHook"]


@dataclass
class MonitorResult:
    """How a monitored run ended: the tracer's outcome and every judgement made."""

    outcome: Outcome
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def malicious(self) -> Measurement | None:
        """The judgement that found the process malicious, if one did."""
        return next((m for m in self.measurements if m.verdict is Verdict.MALICIOUS), None)


class Monitor:
    """The tracer's handler that judges every trapped behaviour and logs each judgement."""

    def __init__(
        self,
        argv: Sequence[str],
        key: PlatformKey,
        log: AuditLog,
        *,
        period: float = 0.0,
        on_verdict: VerdictHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.argv, self.log, self.period, self.clock = list(argv), log, period, clock
        cwd = os.getcwd()
        self.reader = BehaviourReader(Placeholders.of_launch(self.argv[0], self.argv[1:], cwd))
        self.measurer = Measurer(key)
        self.on_verdict = on_verdict
        self.result = MonitorResult(Outcome())
        self._history: dict[tuple[int, str], deque[Key]] = {}
        self._window = 1
        self._root = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._writer: LogWriter | None = None

    def run(
        self, *, stdout: int | None = None, timeout: float | None = None, trap_all: bool = False
    ) -> MonitorResult:
        """Start the program under the monitor and watch it until it ends.

        `trap_all` stops the program at every system call (judging only the sensitive ones):
        the cost of a monitor without the seccomp filter, for the benchmark.
        """
        tracer = Tracer(self.argv, stdout=stdout, timeout=timeout, trap_all=trap_all)
        self._writer = LogWriter(self.log)
        try:
            self.result.outcome = tracer.run(self)
        finally:
            self._stop.set()
            if self._ticker is not None:
                self._ticker.join()
            self.reader.close()
            self._writer.close()
        return self.result

    # -- the tracer's handler -----------------------------------------------------------

    def launched(self, pid: int) -> Decision:
        """The launch: a static measurement before the program's first instruction."""
        self._root = pid
        decision = self._judge(pid, self.reader.launch(pid), "launch")
        if decision is Decision.CONTINUE and self.period > 0:
            self._ticker = threading.Thread(target=self._tick, name="integrity-ticker", daemon=True)
            self._ticker.start()
        return decision

    def syscall(self, pid: int, trap: Trap, args: Args, regs: Registers) -> Decision:
        """A trapped call: judge it if its arguments make it a modification behaviour."""
        behaviour = self.reader.syscall(pid, trap, args, regs)
        return Decision.CONTINUE if behaviour is None else self._judge(pid, behaviour, "behaviour")

    def spawned(self, pid: int, child: int, regs: Registers) -> Decision:
        """A new process is a behaviour of its parent; the child inherits the image."""
        decision = self._judge(pid, self.reader.spawn(pid, regs), "behaviour")
        if decision is Decision.CONTINUE:
            self.reader.inherit(pid, child)
        return decision

    def execed(self, pid: int) -> None:
        """`pid` runs another program now: what was read of its old image is stale."""
        self.reader.forget(pid)

    def exited(self, pid: int) -> None:
        """Forget what was kept for `pid`."""
        self.reader.forget(pid)
        for slot in [s for s in self._history if s[0] == pid]:
            del self._history[slot]
        if pid == self._root:
            self._stop.set()

    # -- judging --------------------------------------------------------------------------

    def _judge(self, pid: int, behaviour: Behaviour | None, trigger: str) -> Decision:
        slot = (pid, behaviour.function if behaviour else "")
        before = list(self._history.get(slot, ()))
        view = self.reader.view(pid)
        try:
            base: int | None = self.reader.image(pid).base
        except IntegrityError:
            base = None  # measure() finds it, or says why it cannot

        def extract() -> IntegritySection:
            section = self.measurer.extract(pid)
            self._window = section.trace.window
            return section

        m = judge(
            behaviour,
            before,
            extract,
            lambda: self.measurer.measure(pid, view, base),
            pid=pid,
            trigger=trigger,
            now_ms=int(self.clock() * 1000),
        )
        if behaviour is not None:
            history = self._history.setdefault(slot, deque(maxlen=max(self._window - 1, 0)))
            history.append(behaviour.key)
        self._record(m)
        return Decision.CONTINUE if m.verdict is Verdict.TRUSTED else Decision.KILL

    def _record(self, m: Measurement) -> None:
        with self._lock:
            self.result.measurements.append(m)
        malicious = m.verdict is Verdict.MALICIOUS
        reported = m.trigger == "launch" or malicious
        assert self._writer is not None
        # A trusted behaviour is written while the program runs on; the launch and a malicious
        # verdict are in the log (and a malicious one on disk) before the program goes on or dies.
        self._writer.append(m.to_cbor, sync=malicious, wait=reported)
        if self.on_verdict is not None and reported:
            self.on_verdict(m)

    def _tick(self) -> None:
        view = ProcView(self._root)
        try:
            while not self._stop.wait(self.period):
                m = judge(
                    None,
                    (),
                    lambda: self.measurer.extract(self._root),
                    lambda: self.measurer.measure(self._root, view),
                    pid=self._root,
                    trigger="periodic",
                    now_ms=int(self.clock() * 1000),
                )
                if self._stop.is_set() or not _alive(self._root):
                    return  # the process ended while it was being measured
                self._record(m)
                if m.verdict is Verdict.MALICIOUS:
                    _kill_group(self._root)
                    return
        finally:
            view.close()


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie's program can no longer be measured)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X", "x")


def _kill_group(pid: int) -> None:
    for target in (-pid, pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGKILL)
