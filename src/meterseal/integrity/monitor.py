"""Run time: the process monitor (paper section 3.4) on a real process, via the tracer.

Each modification behaviour the seccomp filter traps, the creation of a process and the
launch itself go through `judgement.judge`: extraction of T from the program file the process
runs (/proc/PID/exe), f_d against T, newHV of the file with the process's mapped read-only
segments, f_v, f_j. A malicious verdict kills the process (and everything it started) before
the behaviour's system call runs. Every judgement is appended to the security audit log.
With `period` > 0 a thread also measures the running process on a timer (our addition: a
patch in memory is found even if the program makes no further modification behaviour).

Where gcc can build it, the tracer serves stops from the native loop (`native`): a trapped call
that repeats a trusted judgement is re-checked there against every input that judgement read
(`rechecks`, `recipe`) and resumed without waking Python; any difference, and every other stop,
comes here. Judgements are written to the log by a thread (`auditlog.LogWriter`) while the
program runs on; the launch and a malicious verdict are written before it goes on or dies.
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
from meterseal.integrity.measurer import Measurer, ProgramFile
from meterseal.integrity.native import FastPath
from meterseal.integrity.native import available as native_available
from meterseal.integrity.platform_key import PlatformKey
from meterseal.integrity.procfs import ProcView
from meterseal.integrity.reader import BehaviourReader, Registers
from meterseal.integrity.rechecks import Call, Evidence, Rechecks
from meterseal.integrity.section import IntegritySection
from meterseal.integrity.syscalls import Args, Trap
from meterseal.integrity.threads import helper_thread
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
        native: bool = True,
    ) -> None:
        """`native`: serve stops from the native loop where gcc can build it (module `native`)."""
        self.argv, self.log, self.period, self.clock = list(argv), log, period, clock
        self.native = native
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
        self._lock = threading.Lock()  # keeps the measurements and the log in one order
        self._writer: LogWriter | None = None
        self._rechecks: Rechecks | None = None

    def run(
        self,
        *,
        stdout: int | None = None,
        timeout: float | None = None,
        trap_all: bool = False,
    ) -> MonitorResult:
        """Start the program under the monitor and watch it until it ends.

        `trap_all` stops the program at every system call (judging only the sensitive ones):
        the cost of a monitor without the seccomp filter, for the benchmark.
        """
        fastpath = self._fastpath()
        tracer = Tracer(
            self.argv, stdout=stdout, timeout=timeout, trap_all=trap_all, fastpath=fastpath
        )
        if fastpath is not None:
            self._rechecks = Rechecks(fastpath, self.reader.placeholders)
        self._writer = LogWriter(self.log, source=self._pull)
        try:
            self.result.outcome = tracer.run(self)
        finally:
            self._stop.set()
            if self._ticker is not None:
                self._ticker.join()
            self.reader.close()
            try:
                self._pull()
                self._writer.close()
            finally:
                if fastpath is not None:
                    fastpath.close()
        return self.result

    def _fastpath(self) -> FastPath | None:
        # The native loop stamps re-checked calls with the system clock: only with that clock.
        if not self.native or self.clock is not time.time or native_available() is not None:
            return None
        return FastPath()

    # -- the tracer's handler -----------------------------------------------------------

    def launched(self, pid: int) -> Decision:
        """The launch: a static measurement before the program's first instruction."""
        self._root = pid
        decision = self._judge(pid, self.reader.launch(pid), "launch")
        if decision is Decision.CONTINUE and self.period > 0:
            self._ticker = helper_thread(self._tick, "integrity-ticker")
            self._ticker.start()
        return decision

    def syscall(self, pid: int, trap: Trap, args: Args, regs: Registers) -> Decision:
        """A trapped call: judge it if its arguments make it a modification behaviour."""
        behaviour = self.reader.syscall(pid, trap, args, regs)
        if behaviour is None:
            return Decision.CONTINUE
        return self._judge(pid, behaviour, "behaviour", Call(trap, args, regs))

    def spawned(self, pid: int, child: int, regs: Registers) -> Decision:
        """A new process is a behaviour of its parent; the child inherits the image."""
        decision = self._judge(pid, self.reader.spawn(pid, regs), "behaviour")
        if decision is Decision.CONTINUE:
            self.reader.inherit(pid, child)
        return decision

    def execed(self, pid: int) -> None:
        """`pid` runs another program now: what was read of its old image is stale."""
        self.reader.forget(pid)
        if self._rechecks is not None:
            self._rechecks.forget(pid)

    def exited(self, pid: int) -> None:
        """Forget what was kept for `pid`."""
        self.reader.forget(pid)
        if self._rechecks is not None:
            self._rechecks.forget(pid)
        for slot in [s for s in self._history if s[0] == pid]:
            del self._history[slot]
        if pid == self._root:
            self._stop.set()

    # -- judging --------------------------------------------------------------------------

    def _judge(
        self, pid: int, behaviour: Behaviour | None, trigger: str, call: Call | None = None
    ) -> Decision:
        slot = (pid, behaviour.function if behaviour else "")
        before = tuple(self._history.get(slot, ()))
        view = self.reader.view(pid)
        try:
            base: int | None = self.reader.image(pid).base
        except IntegrityError:
            base = None  # measure() finds it, or says why it cannot
        read: list[ProgramFile] = []  # the program file, read (or its identity checked) once
        extracted: list[IntegritySection] = []

        def program() -> ProgramFile:
            if not read:
                read.append(self.measurer.program(pid))
            return read[0]

        def extract() -> IntegritySection:
            extracted.append(self.measurer.extract(pid, program()))
            self._window = extracted[0].trace.window
            return extracted[0]

        m = judge(
            behaviour,
            before,
            extract,
            lambda: self.measurer.measure(pid, view, base, program()),
            pid=pid,
            trigger=trigger,
            now_ms=int(self.clock() * 1000),
        )
        if behaviour is not None:
            history = self._history.setdefault(slot, deque(maxlen=max(self._window - 1, 0)))
            history.append(behaviour.key)
            if self._rechecks is not None and trigger != "launch":
                words = (
                    None
                    if call is None
                    else self.reader.unwound(pid, call.regs, behaviour.function)
                )
                evidence = Evidence(
                    self.reader.decoded if call is not None else None,
                    words,
                    read[0] if read else None,
                    extracted[0] if extracted else None,
                    base,
                )
                self._rechecks.judged(pid, behaviour, before, tuple(history), m, call, evidence)
        self._record(m)
        return Decision.CONTINUE if m.verdict is Verdict.TRUSTED else Decision.KILL

    def _record(self, m: Measurement) -> None:
        malicious = m.verdict is Verdict.MALICIOUS
        reported = m.trigger == "launch" or malicious
        with self._lock:
            self._pull_locked()  # repeats resumed before this judgement go first
            done = self._note(m, urgent=reported)
        # A trusted behaviour is written while the program runs on; the launch and a malicious
        # verdict are in the log (and a malicious one on disk) before the program goes on or dies.
        if done is not None:
            assert self._writer is not None
            self._writer.wait(done)
        if self.on_verdict is not None and reported:
            self.on_verdict(m)

    def _pull(self) -> None:
        """Record the judgements of the calls the native loop re-checked and resumed."""
        with self._lock:
            self._pull_locked()

    def _pull_locked(self) -> None:
        if self._rechecks is None:
            return
        for m in self._rechecks.pull():
            self._note(m, urgent=False)
            if m.verdict is Verdict.MALICIOUS:  # cannot be: its inputs were found unchanged
                _kill_group(m.pid)

    def _note(self, m: Measurement, *, urgent: bool) -> threading.Event | None:
        assert self._writer is not None
        self.result.measurements.append(m)
        return self._writer.append(m.to_cbor, sync=m.verdict is Verdict.MALICIOUS, urgent=urgent)

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
