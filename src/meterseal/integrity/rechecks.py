"""The monitor's side of the native fast path: what a judged call may be re-checked against,
and the judgements of the repeats the native loop re-checked and resumed.

After the monitor judges a trapped call trusted, `Rechecks.judged` registers a `Recipe` when
the call can be re-checked exactly: its object is a path that the decoder read from the path
argument alone (so string, directory and components are all its inputs), unwinding named a
program function from stack words it read, newHV was HV because the code in memory equalled
the file, and the function's behaviour history did not change (the same behaviour repeated:
f_d of the next repeat is the same question with the same answer). Any judgement in a slot
drops that slot's recipes first, since its history may have changed. Each repeat the native
loop resumed is then judged by `judgement.judge` with the inputs it confirmed, so the audit
log holds, for every modification behaviour, the record the scheme makes.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from meterseal.integrity.behaviour import Action, Behaviour, Placeholders
from meterseal.integrity.judgement import Measurement, Verdict, judge
from meterseal.integrity.measurer import ProgramFile
from meterseal.integrity.native import FastPath
from meterseal.integrity.procfs import STRING_LIMIT
from meterseal.integrity.reader import DecodeRecord, Registers
from meterseal.integrity.recipe import NO_ARGUMENT, ImageCheck, Recipe, lexical_realpath
from meterseal.integrity.section import IntegritySection
from meterseal.integrity.syscalls import AT_FDCWD, TRAPS, Args, Trap, s32
from meterseal.integrity.trace import Key

_NEW_CODE = frozenset({Action.EXEC, Action.MAP_EXEC, Action.PROTECT_EXEC})


@dataclass(frozen=True, slots=True)
class Call:
    """A trapped call as the tracer stopped it."""

    trap: Trap
    args: Args
    regs: Registers


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the monitor read to judge a call (see `Rechecks.judged`)."""

    decoded: DecodeRecord | None
    words: tuple[tuple[int, int | None], ...] | None  # the stack words unwinding read
    program: ProgramFile | None
    section: IntegritySection | None
    base: int | None  # where the program is loaded


@dataclass(frozen=True, slots=True)
class _Judged:
    behaviour: Behaviour
    before: tuple[Key, ...]
    section: IntegritySection
    hv: bytes

    def again(self, pid: int, at_ms: int) -> Measurement:
        """The judgement of a repeat whose inputs the native loop found unchanged."""
        return judge(
            self.behaviour,
            self.before,
            lambda: self.section,
            lambda: (self.hv, self.hv),  # memory equalled the file, whose HV this is
            pid=pid,
            trigger="behaviour",
            now_ms=at_ms,
        )


class Rechecks:
    """Recipes of one monitored run's trusted calls, and the judgements of their repeats."""

    def __init__(self, fastpath: FastPath, placeholders: Placeholders) -> None:
        self.fastpath = fastpath
        self.placeholders = placeholders
        self._judged: dict[int, _Judged] = {}
        self._recipes: dict[tuple[int, int], list[int]] = {}  # (pid, slot) -> live recipe ids
        self._retired: list[int] = []  # dropped: forgotten once their queued repeats are pulled
        self._slots: dict[tuple[int, str], int] = {}
        self._images: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()  # pull() runs on the audit-log writer's thread

    def judged(
        self,
        pid: int,
        behaviour: Behaviour,
        before: tuple[Key, ...],
        after: tuple[Key, ...],
        m: Measurement,
        call: Call | None,
        evidence: Evidence,
    ) -> None:
        """The monitor judged `behaviour` of `pid` (`call`: the trapped call, if it was one)."""
        slot = self._slots.setdefault((pid, behaviour.function), len(self._slots))
        self.fastpath.drop_slot(pid, slot)
        self._retire([(pid, slot)] if (pid, slot) in self._recipes else [])
        if behaviour.action in _NEW_CODE:
            self.forget(pid)  # new code mapped: what unwinding walks may differ now
        if call is None or m.verdict is not Verdict.TRUSTED or before != after:
            return
        section, program = evidence.section, evidence.program
        if section is None or program is None or evidence.base is None or evidence.words is None:
            return
        if m.new_hv != section.hv or program.hv != section.hv:
            return  # newHV was HV only with the code in memory differing from the file
        recipe = self._recipe(self._next, pid, slot, behaviour, call, evidence)
        if recipe is None:
            return
        self._next += 1
        if pid not in self._images:
            self.fastpath.add_image(_image_check(pid, program, evidence.base).encode())
            self._images.add(pid)
        with self._lock:
            self._judged[recipe.id] = _Judged(behaviour, before, section, section.hv)
        self.fastpath.add_recipe(recipe.encode())
        self._recipes.setdefault((pid, slot), []).append(recipe.id)

    def forget(self, pid: int) -> None:
        """`pid` exec'd or exited: its recipes and image check no longer apply."""
        self.fastpath.forget(pid)
        self._images.discard(pid)
        self._retire([key for key in self._recipes if key[0] == pid])

    def pull(self) -> list[Measurement]:
        """The judgements of the repeats resumed natively since the last pull, in order."""
        with self._lock:
            retired, self._retired = self._retired, []
            found = [
                self._judged[recipe].again(pid, at_ns // 1_000_000)
                for recipe, pid, at_ns in self.fastpath.drain()
            ]
            # Dropped natively before this drain: no repeat of theirs can be queued any more.
            for recipe in retired:
                del self._judged[recipe]
        return found

    def _retire(self, keys: list[tuple[int, int]]) -> None:
        with self._lock:
            for key in keys:
                self._retired.extend(self._recipes.pop(key))

    def _recipe(
        self, rid: int, pid: int, slot: int, behaviour: Behaviour, call: Call, evidence: Evidence
    ) -> Recipe | None:
        decoded, trap, args = evidence.decoded, call.trap, call.args
        if trap.path is None or decoded is None or decoded.other or evidence.words is None:
            return None
        dirfd_arg, path_arg = trap.path
        if len(decoded.strings) != 1 or decoded.strings[0][0] != args[path_arg]:
            return None
        text = decoded.strings[0][1]
        raw = text.encode("utf-8", "surrogateescape")
        if len(raw) >= STRING_LIMIT - 1:
            return None  # it may have been cut at the limit
        link = target = ""
        if os.path.isabs(text):
            if decoded.links:
                return None
            joined = text
        else:
            if len(decoded.links) != 1:
                return None
            link, target = decoded.links[0]
            relative_to_cwd = dirfd_arg == NO_ARGUMENT or s32(args[dirfd_arg]) == AT_FDCWD
            expected = f"/proc/{pid}/" + (
                "cwd" if relative_to_cwd else f"fd/{s32(args[dirfd_arg])}"
            )
            if link != expected or not target.startswith("/"):
                return None
            joined = os.path.join(target, text)
        resolved, looked_at = lexical_realpath(joined)
        if self.placeholders.path(resolved) != behaviour.obj:
            return None  # a symbolic link was part of it: only the monitor resolves those
        regs = call.regs
        return Recipe(
            rid,
            pid,
            slot,
            TRAPS.index(trap),
            regs.rip,
            regs.rsp,
            regs.rbp,
            path_arg,
            dirfd_arg,
            s32(args[dirfd_arg]) if dirfd_arg != NO_ARGUMENT else 0,
            raw,
            link,
            target,
            looked_at,
            evidence.words,
        )


def _image_check(pid: int, program: ProgramFile, base: int) -> ImageCheck:
    segments = tuple(
        (base + s.vaddr, program.data[s.offset : s.offset + s.filesz])
        for s in program.layout.segments
        if s.measured
    )
    return ImageCheck(pid, program.identity, segments)
