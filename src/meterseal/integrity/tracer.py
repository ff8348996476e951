"""Runs a program under ptrace with the seccomp filter and hands each trapped call to a handler.

The child puts itself in its own process group, asks to be traced and stops; the tracer sets
its options (seccomp events, fork/vfork/clone/exec events, kill the tracees if the tracer
dies) and lets it exec the program with the filter installed. Only trapped calls, process
creation and the exec stop the tracee; the handler's `Decision` continues or kills it. All
ptrace calls come from the thread that called `run`, as the kernel requires. With a `FastPath`
the wait loop runs natively (`native`): it resumes by itself the repeats it re-checked and
hands every other stop to the same per-stop code as the Python loop (`_on_stop`).
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
import platform
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from meterseal.integrity.errors import MonitorUnavailable
from meterseal.integrity.native import FastPath
from meterseal.integrity.reader import Registers
from meterseal.integrity.seccomp_filter import NOT_SENSITIVE, SeccompProgram, compile_filter
from meterseal.integrity.syscalls import TRAPS, Args, Trap
from meterseal.integrity.threads import helper_thread

PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000
PTRACE_GETEVENTMSG = 0x4201
EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_EXEC, EVENT_SECCOMP = 1, 2, 3, 4, 7
WALL = 0x40000000
OPTIONS = (
    PTRACE_O_TRACEFORK
    | PTRACE_O_TRACEVFORK
    | PTRACE_O_TRACECLONE
    | PTRACE_O_TRACEEXEC
    | PTRACE_O_TRACESECCOMP
    | PTRACE_O_EXITKILL
)
CHILD_SETUP_FAILED = 127


class Decision(enum.Enum):
    """What the handler wants done with a stopped tracee."""

    CONTINUE = "continue"
    KILL = "kill"


class Handler(Protocol):
    """The monitor or the trace recorder: judges what the tracer reports."""

    def launched(self, pid: int) -> Decision:
        """The program's image is mapped and nothing of it has run yet."""
        ...

    def syscall(self, pid: int, trap: Trap, args: Args, regs: Registers) -> Decision:
        """A trapped system call, stopped before it runs."""
        ...

    def spawned(self, pid: int, child: int, regs: Registers) -> Decision:
        """`pid` created process `child` (stopped, not yet run)."""
        ...

    def execed(self, pid: int) -> None:
        """`pid` (not the launch) replaced its program image: what was read of it is stale."""
        ...

    def exited(self, pid: int) -> None:
        """A traced process is gone."""
        ...


@dataclass
class Outcome:
    """How a traced run ended and what the tracer saw."""

    pid: int = 0
    exit_code: int | None = None  # set when the program exited
    signal: int | None = None  # set when a signal ended it
    killed: bool = False  # the handler (or the timeout) decided to kill it
    trapped: int = 0  # stops for sensitive calls, process creation and the launch
    syscalls: int = 0  # every system call, counted only when everything is trapped
    timed_out: bool = False
    rechecked: int = 0  # trapped calls the native loop re-checked and resumed (in `trapped`)


def _ptrace() -> Any:
    if platform.machine() != "x86_64":
        raise MonitorUnavailable(f"the monitor decodes x86-64 registers, not {platform.machine()}")
    try:
        from ptrace.binding import func
    except ImportError as exc:
        raise MonitorUnavailable(f"python-ptrace is not installed: {exc}") from None
    return func


@dataclass
class Tracer:
    """One traced run of `argv` (argv[0] is the program path)."""

    argv: Sequence[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    stdout: int | None = None  # a descriptor for the program's stdout (default: inherited)
    trap_all: bool = False  # trap every call (to count them, or to compare the cost)
    timeout: float | None = None
    fastpath: FastPath | None = None  # serve stops from the native loop (see `native`)
    _pt: Any = None
    _pids: set[int] = field(default_factory=set)
    _pgid: int = 0
    _launched: bool = False

    def run(self, handler: Handler) -> Outcome:
        """Start the program, serve its stops until it ends, and say how it ended."""
        self._pt = _ptrace()
        program = SeccompProgram(compile_filter(TRAPS, trap_all=self.trap_all))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits
            self._child(program)
        outcome = Outcome(pid)
        self._pids, self._pgid = {pid}, pid
        ended = threading.Event()
        timer = None
        if self.timeout:
            timeout = self.timeout
            timer = helper_thread(
                lambda: None if ended.wait(timeout) else self._expire(outcome), "integrity-timeout"
            )
        try:
            self._start(pid)
            if timer is not None:
                timer.start()
            self._serve(handler, outcome)
            if self._pids:  # one left our process group: nothing outlives the monitored run
                self._kill_all()
                for pid_left in list(self._pids):
                    self._reap(pid_left)
        except BaseException:
            self._kill_all()
            self._reap(pid)
            raise
        finally:
            ended.set()
        return outcome

    def _child(self, program: SeccompProgram) -> None:  # pragma: no cover - runs in the child
        try:
            os.setpgid(0, 0)
            if self.stdout is not None:
                os.dup2(self.stdout, 1)
            if self.cwd is not None:
                os.chdir(self.cwd)
            self._pt.ptrace_traceme()
            os.kill(os.getpid(), signal.SIGSTOP)
            if program.install() == 0:
                # The monitored program itself, by path: no shell is involved.
                os.execve(self.argv[0], list(self.argv), self.env or dict(os.environ))  # noqa: S606
        finally:
            os._exit(CHILD_SETUP_FAILED)

    def _start(self, pid: int) -> None:
        _, status = os.waitpid(pid, WALL)
        if not os.WIFSTOPPED(status):
            raise MonitorUnavailable(
                "the child could not be traced (is ptrace forbidden here? "
                "see /proc/sys/kernel/yama/ptrace_scope and seccomp in the container)"
            )
        self._pt.ptrace_setoptions(pid, OPTIONS)
        self._pt.ptrace_cont(pid, 0)

    def _serve(self, handler: Handler, outcome: Outcome) -> None:
        self._launched = False
        if self.fastpath is not None:
            self.fastpath.serve(
                self._pgid,
                lambda pid, status, msg: self._on_stop(handler, outcome, pid, status, msg),
            )
            outcome.rechecked = self.fastpath.hits
            outcome.trapped += self.fastpath.hits
            outcome.syscalls += self.fastpath.hits + self.fastpath.passed
            return
        while self._pids:
            try:
                pid, status = os.waitpid(-self._pgid, WALL)
            except ChildProcessError:
                break
            self._on_stop(handler, outcome, pid, status, None)

    def _on_stop(
        self, handler: Handler, outcome: Outcome, pid: int, status: int, msg: int | None
    ) -> bool:
        """Handle one stop or exit (`msg`: its event message, if read); whether the run is over."""
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._gone(handler, outcome, pid, status)
            return not self._pids
        if not os.WIFSTOPPED(status):
            return not self._pids
        event, sig = status >> 16, os.WSTOPSIG(status)
        decision = Decision.CONTINUE
        if event == EVENT_SECCOMP:
            decision = self._on_seccomp(handler, outcome, pid, msg)
        elif event in (EVENT_FORK, EVENT_VFORK, EVENT_CLONE):
            decision = self._on_spawn(handler, outcome, pid)
        elif event == EVENT_EXEC and pid == outcome.pid and self._launched and not outcome.trapped:
            outcome.trapped += 1
            decision = handler.launched(pid)
        elif event == EVENT_EXEC:
            handler.execed(pid)
        elif event == 0 and sig not in (signal.SIGSTOP, signal.SIGTRAP):
            self._resume(pid, sig)  # a signal for the program: deliver it
            return not self._pids
        if decision is Decision.KILL:
            outcome.killed = True
            self._kill_all()
        else:
            self._resume(pid, 0)
        return not self._pids

    def _on_seccomp(
        self, handler: Handler, outcome: Outcome, pid: int, msg: int | None
    ) -> Decision:
        index = self._event_message(pid) if msg is None else msg
        outcome.syscalls += 1
        if index == NOT_SENSITIVE or index >= len(TRAPS):
            return Decision.CONTINUE
        if not self._launched and pid == outcome.pid:
            self._launched = True
            return Decision.CONTINUE  # the launch's own execve, judged at its exec stop
        regs = self._pt.ptrace_getregs(pid)
        args = (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)
        outcome.trapped += 1
        return handler.syscall(pid, TRAPS[index], args, _registers(regs))

    def _on_spawn(self, handler: Handler, outcome: Outcome, pid: int) -> Decision:
        child = self._event_message(pid)
        self._pids.add(child)
        if _tgid(child) == _tgid(pid):
            return Decision.CONTINUE  # a thread: its calls are trapped like any other
        regs = self._pt.ptrace_getregs(pid)
        outcome.trapped += 1
        return handler.spawned(pid, child, _registers(regs))

    def _gone(self, handler: Handler, outcome: Outcome, pid: int, status: int) -> None:
        self._pids.discard(pid)
        handler.exited(pid)
        if pid != outcome.pid:
            return
        if os.WIFEXITED(status):
            outcome.exit_code = os.WEXITSTATUS(status)
        else:
            outcome.signal = os.WTERMSIG(status)
        if self._pids:  # nothing may outlive the monitored program
            self._kill_all()

    def _event_message(self, pid: int) -> int:
        value = ctypes.c_ulong()
        self._pt.ptrace(PTRACE_GETEVENTMSG, pid, 0, ctypes.addressof(value))
        return int(value.value)

    def _resume(self, pid: int, sig: int) -> None:
        with contextlib.suppress(self._pt.PtraceError):  # killed meanwhile: its exit comes next
            self._pt.ptrace_cont(pid, sig)

    def _kill_all(self) -> None:
        for target in (-self._pgid, *self._pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGKILL)

    def _expire(self, outcome: Outcome) -> None:
        outcome.timed_out = outcome.killed = True
        self._kill_all()

    def _reap(self, pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, WALL)


def _registers(regs: Any) -> Registers:
    return Registers(regs.rip, regs.rsp, regs.rbp)


def _tgid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Tgid:"))
    except (OSError, StopIteration):
        return -1
