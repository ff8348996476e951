"""Software behaviour as the scheme defines it: subject APPLIES action TO object (sans-IO).

Definition 1 of the paper: a behaviour is a subject (the process, named by its program) acting
on an object (a system resource) through an action, here attributed to the software function
of the program that made the system call. Only modification behaviours (Definition 6) are
ever judged: the `Action` values below are the ones that can undermine integrity.

Objects are normalised against the launch (`Placeholders`): the program path becomes
``${exe}`` and every path or address given as an argument becomes ``${argN}``, so a trace
recorded in one directory still describes the same program run from another.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass

START = ("^", "^")  # pads the first windows of a function's sequence (no behaviour before)


class Action(enum.StrEnum):
    """The modification behaviours the monitor traps (what the subject does to the object)."""

    EXEC = "exec"  # run another program image (the launch itself is one too)
    SPAWN = "spawn"  # create a process
    OPEN_WRITE = "open_write"  # open a file for writing, creating or truncating it
    UNLINK = "unlink"
    RENAME = "rename"
    TRUNCATE = "truncate"
    CHMOD = "chmod"
    MAP_EXEC = "map_exec"  # map memory executable
    PROTECT_EXEC = "protect_exec"  # make mapped memory executable
    CONNECT = "connect"
    SEND_TO = "send_to"  # a datagram to an address other than the connected one
    SIGNAL = "signal"
    PTRACE = "ptrace"
    MEMORY_WRITE = "memory_write"  # write another process's memory
    SYSTEM = "system"  # kernel modules, mounts, reboot, kexec


@dataclass(frozen=True, slots=True)
class Behaviour:
    """One modification behaviour A_i: subject, the function it acts from, action and object."""

    subject: str
    function: str
    action: Action
    obj: str

    @property
    def key(self) -> tuple[str, str]:
        """What the trace stores per function: (action, object)."""
        return (self.action.value, self.obj)

    def describe(self) -> str:
        """The paper's notation: (s) APPLIES (f) to (obj), with the function it came from."""
        return f"{self.subject} APPLIES {self.action.value} TO {self.obj} (in {self.function})"


def _resolved(path: str, cwd: str) -> str:
    return os.path.realpath(os.path.join(cwd, path))


@dataclass(frozen=True, slots=True)
class Placeholders:
    """Concrete launch values (program, arguments) and the names a trace uses for them."""

    paths: tuple[tuple[str, str], ...]  # (absolute path, placeholder), longest path first
    words: tuple[tuple[str, str], ...]  # (argument text, placeholder) for addresses

    @classmethod
    def of_launch(cls, exe: str, args: Sequence[str], cwd: str) -> Placeholders:
        """Placeholders for `exe` run with `args` from `cwd` (args that look like paths)."""
        paths = [(_resolved(exe, cwd), "${exe}")]
        words = []
        for i, arg in enumerate(args, start=1):
            if not arg:
                continue
            if "/" in arg or os.path.exists(os.path.join(cwd, arg)):
                paths.append((_resolved(arg, cwd), f"${{arg{i}}}"))
            words.append((arg, f"${{arg{i}}}"))
        paths.sort(key=lambda p: len(p[0]), reverse=True)
        return cls(tuple(paths), tuple(words))

    def path(self, path: str) -> str:
        """A resolved path with the longest launch path it starts with replaced."""
        for concrete, name in self.paths:
            if path == concrete:
                return name
            if path.startswith(concrete.rstrip("/") + "/"):
                return name + path[len(concrete.rstrip("/")) :]
        return path

    def address(self, kind: str, address: str) -> str:
        """An address object (``kind:address``), named by an argument when one gave it."""
        for concrete, name in self.words:
            if address == concrete:
                return f"{kind}:{name}"
        return f"{kind}:{address}"


def windows(sequence: Sequence[tuple[str, str]], size: int) -> list[tuple[tuple[str, str], ...]]:
    """Every window of `size` consecutive behaviours, padded at the start with START."""
    padded = [START] * (size - 1) + list(sequence)
    return [tuple(padded[i : i + size]) for i in range(len(sequence))]
