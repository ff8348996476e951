"""Offline phase, first half: record the behaviour traces of trusted runs of a program.

The same tracer and filter as the monitor, so the trace holds exactly the behaviours the
monitor will later judge, named the same way (function attribution and placeholders).
Nothing is judged: every behaviour is recorded and the program runs to its end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from meterseal.integrity.behaviour import Placeholders
from meterseal.integrity.reader import BehaviourReader, Registers
from meterseal.integrity.syscalls import Args, Trap
from meterseal.integrity.trace import TraceRecorder
from meterseal.integrity.tracer import Decision, Outcome, Tracer


@dataclass
class _Recording:
    """The tracer's handler for a trusted run."""

    reader: BehaviourReader
    recorder: TraceRecorder

    def launched(self, pid: int) -> Decision:
        self.recorder.record(pid, self.reader.launch(pid))
        return Decision.CONTINUE

    def syscall(self, pid: int, trap: Trap, args: Args, regs: Registers) -> Decision:
        behaviour = self.reader.syscall(pid, trap, args, regs)
        if behaviour is not None:
            self.recorder.record(pid, behaviour)
        return Decision.CONTINUE

    def spawned(self, pid: int, child: int, regs: Registers) -> Decision:
        self.recorder.record(pid, self.reader.spawn(pid, regs))
        self.reader.inherit(pid, child)
        return Decision.CONTINUE

    def execed(self, pid: int) -> None:
        self.reader.forget(pid)

    def exited(self, pid: int) -> None:
        self.reader.forget(pid)


def record_run(
    recorder: TraceRecorder,
    argv: Sequence[str],
    *,
    stdout: int | None = None,
    timeout: float | None = None,
) -> Outcome:
    """Run `argv` once under the tracer and add its behaviours to `recorder`."""
    reader = BehaviourReader(Placeholders.of_launch(argv[0], argv[1:], os.getcwd()))
    try:
        outcome = Tracer(list(argv), stdout=stdout, timeout=timeout).run(
            _Recording(reader, recorder)
        )
    finally:
        reader.close()
    recorder.end_run()
    return outcome
