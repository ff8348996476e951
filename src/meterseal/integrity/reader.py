"""Turns a stopped tracee's system call into a `Behaviour`: subject, function, action, object.

The subject is the program the process runs (``${exe}`` for the launched one). The function is
found by unwinding the stopped stack with CFI (`unwind`): the program's functions on it,
named by its symbol table, outermost first ("_start > main > persist_energy"), so a helper
called from two places is two functions of the trace. A process with no frame of the program
on its stack (the dynamic loader, a vfork child) is named after the library it is in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from meterseal.integrity.behaviour import Action, Behaviour, Placeholders
from meterseal.integrity.procfs import Mapping, MeasurementError, ProcessImage, ProcView, read_maps
from meterseal.integrity.syscalls import Args, Trap
from meterseal.integrity.unwind import FrameTable, Module, frames

LAUNCH_FUNCTION = "<launch>"
CONTEXT_SEPARATOR = " > "
MAX_CONTEXT = 8  # innermost program functions kept in a calling context
STACK_WINDOW = 16384  # bytes of stack above the stack pointer read at once to unwind
MAX_UNWOUND = 256  # unwindings kept for reuse

_tables: dict[tuple[str, int, int], FrameTable] = {}
_tables_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Registers:
    """The stopped registers unwinding starts from."""

    rip: int
    rsp: int
    rbp: int


def frame_table(path: str, inode: int) -> FrameTable | None:
    """The frame table of the file at `path` if it is still inode `inode` (cached)."""
    try:
        st = os.stat(path)
        if st.st_ino != inode:
            return None
        key = (path, inode, st.st_mtime_ns)
        with _tables_lock:
            table = _tables.get(key)
        if table is None:
            with open(path, "rb") as file:
                table = FrameTable(file.read())
            with _tables_lock:
                _tables[key] = table
    except OSError:
        return None
    return table


class _Modules:
    """The ELF files mapped in a process, found by address (each file's table looked up once)."""

    def __init__(self, maps: list[Mapping]) -> None:
        self.maps = [m for m in maps if m.path.startswith("/")]
        self._bases: dict[int, int] = {}
        self._found: dict[int, Module | None] = {}
        for m in self.maps:
            if m.offset == 0:
                self._bases[m.inode] = min(m.start, self._bases.get(m.inode, m.start))

    def covers(self, pc: int) -> bool:
        """Whether `pc` is in a file mapping known when these maps were read."""
        return any(m.start <= pc < m.end for m in self.maps)

    def at(self, pc: int) -> Module | None:
        for m in self.maps:
            if m.start <= pc < m.end and m.inode in self._bases:
                if m.inode not in self._found:
                    # Checked once per maps snapshot: the table read describes the mapped inode.
                    table = frame_table(m.path, m.inode)
                    self._found[m.inode] = (
                        None
                        if table is None
                        else Module(m.path, table, self._bases[m.inode] - table.link_base)
                    )
                return self._found[m.inode]
        return None


class _StackWords:
    """Words of a stopped process's stack for one unwinding, noting each one handed out.

    The frames near the stack pointer come from one read of STACK_WINDOW bytes, any other
    word from a read of its own.
    """

    def __init__(self, view: ProcView, sp: int) -> None:
        self.view, self.sp = view, sp
        self.reads: list[tuple[int, int | None]] = []  # every word handed out, in order
        self._window: bytes | None = None

    def read_word(self, address: int) -> int | None:
        """The 64-bit little-endian word at `address`, None if unreadable."""
        word = self._word(address)
        self.reads.append((address, word))
        return word

    def unchanged(self, reads: Sequence[tuple[int, int | None]]) -> bool:
        """Whether every word of an earlier unwinding still reads the same."""
        return all(self._word(address) == word for address, word in reads)

    def _word(self, address: int) -> int | None:
        at = address - self.sp
        if 0 <= at <= STACK_WINDOW - 8:
            if self._window is None:
                self._window = self.view.read_bytes(self.sp, STACK_WINDOW)  # short at the top
            if at + 8 <= len(self._window):
                return int.from_bytes(self._window[at : at + 8], "little")
        return self.view.read_word(address)


@dataclass(frozen=True, slots=True)
class _Unwound:
    """One unwinding: what it read and what it named.

    Unwinding is a function of the registers, the words read, the mapped files and the
    program image alone, so the same inputs, checked afresh, give the same calling context
    without walking the frames again.
    """

    image: ProcessImage
    modules: _Modules
    reads: tuple[tuple[int, int | None], ...]
    function: str


class DecodeRecord:
    """A `TraceeView` that notes what decoding read (for `rechecks`).

    Strings and directory links are noted; `other` says it read anything else, and then the
    judged call is not re-checked natively.
    """

    def __init__(self, view: ProcView) -> None:
        self.view = view
        self.strings: list[tuple[int, str]] = []  # (address, string)
        self.links: list[tuple[str, str]] = []  # (/proc link, what it read)
        self.other = False

    @property
    def tgid(self) -> int:
        """The process (thread group) id."""
        self.other = True
        return self.view.tgid

    def read_bytes(self, address: int, size: int) -> bytes:
        """Up to `size` bytes at `address`."""
        self.other = True
        return self.view.read_bytes(address, size)

    def read_string(self, address: int) -> str:
        """The C string at `address`."""
        text = self.view.read_string(address)
        self.strings.append((address, text))
        return text

    def fd_path(self, fd: int) -> str:
        """What descriptor `fd` refers to."""
        target = self.view.fd_path(fd)
        self.links.append((f"/proc/{self.view.pid}/fd/{fd}", target))
        return target

    def cwd(self) -> str:
        """The working directory."""
        target = self.view.cwd()
        self.links.append((f"/proc/{self.view.pid}/cwd", target))
        return target

    def mapping_at(self, address: int) -> str:
        """The file mapped at `address`."""
        self.other = True
        return self.view.mapping_at(address)


@dataclass
class BehaviourReader:
    """Reads behaviours of one launch's processes, caching each process's program image."""

    placeholders: Placeholders
    _images: dict[int, ProcessImage] = field(default_factory=dict)
    _views: dict[int, ProcView] = field(default_factory=dict)
    _modules: dict[int, _Modules] = field(default_factory=dict)
    _subjects: dict[int, str] = field(default_factory=dict)
    _unwound: dict[tuple[int, Registers], _Unwound] = field(default_factory=dict)
    decoded: DecodeRecord | None = None  # what the last trapped call's decoding read

    def view(self, pid: int) -> ProcView:
        """The /proc view of `pid` (kept open while the process lives)."""
        if pid not in self._views:
            self._views[pid] = ProcView(pid)
        return self._views[pid]

    def image(self, pid: int) -> ProcessImage:
        """The program image of `pid` (read once per exec)."""
        if pid not in self._images:
            self._images[pid] = ProcessImage.of(pid)
        return self._images[pid]

    def inherit(self, parent: int, child: int) -> None:
        """A forked child runs its parent's image until it execs."""
        if parent in self._images:
            image = self._images[parent]
            self._images[child] = ProcessImage(child, image.data, image.layout, image.base)

    def forget(self, pid: int) -> None:
        """Drop what is cached for `pid` (it exec'd or exited)."""
        self._images.pop(pid, None)
        self._modules.pop(pid, None)
        self._subjects.pop(pid, None)
        for slot in [s for s in self._unwound if s[0] == pid]:
            del self._unwound[slot]
        view = self._views.pop(pid, None)
        if view is not None:
            view.close()

    def subject(self, pid: int) -> str:
        """The program `pid` runs, as the trace names it (kept until it execs or exits)."""
        subject = self._subjects.get(pid)
        if subject is None:
            try:
                subject = self.placeholders.path(os.path.realpath(f"/proc/{pid}/exe"))
            except OSError:
                return "unknown"
            self._subjects[pid] = subject
        return subject

    def function(self, pid: int, regs: Registers) -> str:
        """The function of the program the stopped process is in (see module docstring)."""
        view = self.view(pid)
        try:
            image = self.image(pid)
            modules = self._modules.get(pid)
            if modules is None or not modules.covers(regs.rip):  # mapped something new
                modules = self._modules[pid] = _Modules(read_maps(pid))
        except (MeasurementError, OSError):
            return f"<{os.path.basename(view.mapping_at(regs.rip))}>"
        known = self._unwound.get((pid, regs))
        if (
            known is not None
            and known.image is image
            and known.modules is modules
            and _StackWords(view, regs.rsp).unchanged(known.reads)
        ):
            return known.function
        words = _StackWords(view, regs.rsp)
        chain = []
        for depth, pc in enumerate(
            frames(words.read_word, modules.at, regs.rip, regs.rsp, regs.rbp)
        ):
            link = pc - image.base - (1 if depth else 0)  # a return address is past its call
            if image.layout.code_segment(link) is not None:
                chain.append(image.layout.function_at(link) or f"text+{link:#x}")
        if not chain:
            self._unwound.pop((pid, regs), None)  # what an earlier unwinding read is stale now
            return f"<{os.path.basename(view.mapping_at(regs.rip))}>"
        function = CONTEXT_SEPARATOR.join(reversed(chain[:MAX_CONTEXT]))
        if len(self._unwound) >= MAX_UNWOUND:
            self._unwound.clear()
        self._unwound[(pid, regs)] = _Unwound(image, modules, tuple(words.reads), function)
        return function

    def unwound(
        self, pid: int, regs: Registers, function: str
    ) -> tuple[tuple[int, int | None], ...] | None:
        """The stack words the unwinding from `regs` that named `function` read, if one did."""
        known = self._unwound.get((pid, regs))
        return None if known is None or known.function != function else known.reads

    def syscall(self, pid: int, trap: Trap, args: Args, regs: Registers) -> Behaviour | None:
        """The behaviour a trapped call is, or None when its arguments make it harmless."""
        self.decoded = DecodeRecord(self.view(pid))
        obj = trap.decode(args, self.decoded, self.placeholders)
        if obj is None:
            return None
        return Behaviour(self.subject(pid), self.function(pid, regs), trap.action, obj)

    def spawn(self, pid: int, regs: Registers) -> Behaviour:
        """A new process created by `pid`."""
        return Behaviour(self.subject(pid), self.function(pid, regs), Action.SPAWN, "process")

    def launch(self, pid: int) -> Behaviour:
        """The launch: the monitored program's image mapped, before its first instruction."""
        subject = self.subject(pid)
        return Behaviour(subject, LAUNCH_FUNCTION, Action.EXEC, subject)

    def close(self) -> None:
        """Close every open view."""
        for pid in list(self._views):
            self.forget(pid)
