"""Extraction and newHV of a running process: the two measurements of every judgement.

The program file is the one the process runs (/proc/PID/exe: the inode the kernel executed,
even if its path was replaced). It is read, parsed, hashed (HV) and its section's DSig
checked once per file identity (device, inode, size, mtime, ctime), because the kernel
refuses to write a file while a process executes it (ETXTBSY) and any write changes ctime,
which no user can set. Its code in the process's memory is read at every measurement: newHV
is HV when each measured segment in memory equals the file's bytes (the same image hashes to
the same value), and the hash of the image as it is in memory when one does not.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from meterseal.integrity.elfimage import ElfLayout, Segment, hv, image_hv, layout_of, section_bytes
from meterseal.integrity.platform_key import PlatformKey
from meterseal.integrity.procfs import MeasurementError, ProcView, read_maps
from meterseal.integrity.section import IntegritySection, extract_verified

Identity = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class ProgramFile:
    """A program file as read once: its bytes, layout and HV."""

    identity: Identity
    data: bytes
    layout: ElfLayout
    hv: bytes

    def matches(self, memory: dict[Segment, bytes]) -> bool:
        """Whether every measured segment in memory is byte-equal to the file."""
        return all(
            found == self.data[s.offset : s.offset + s.filesz] for s, found in memory.items()
        )


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Measurer:
    """Extraction and newHV of processes; thread-safe (the periodic measurement shares it)."""

    def __init__(self, key: PlatformKey) -> None:
        self.key = key
        self._files: dict[Identity, ProgramFile] = {}
        self._sections: dict[bytes, IntegritySection] = {}
        self._lock = threading.Lock()

    def program(self, pid: int) -> ProgramFile:
        """The program file `pid` runs (read again only when its identity changed)."""
        path = f"/proc/{pid}/exe"
        try:
            identity = _identity(os.stat(path))
            with self._lock:
                cached = self._files.get(identity)
            if cached is not None:
                return cached
            with open(path, "rb") as exe:
                before = _identity(os.fstat(exe.fileno()))
                data = exe.read()
                after = _identity(os.fstat(exe.fileno()))
        except OSError as exc:
            raise MeasurementError(f"cannot read the program of {pid}: {exc}") from None
        layout = layout_of(data)
        program = ProgramFile(after, data, layout, hv(data, layout))
        with self._lock:
            if before == after:  # not written while it was read: safe to keep
                self._files[after] = program
        return program

    def extract(self, pid: int, program: ProgramFile | None = None) -> IntegritySection:
        """T, HV (and DSig checked) from the program file `pid` runs (`program`, if read)."""
        program = program or self.program(pid)
        content = section_bytes(program.data, program.layout)
        with self._lock:
            cached = self._sections.get(content)
        if cached is None:
            cached = extract_verified(content, self.key)
            with self._lock:
                self._sections[content] = cached
        return cached

    def measure(
        self,
        pid: int,
        view: ProcView,
        base: int | None = None,
        program: ProgramFile | None = None,
    ) -> tuple[bytes, bytes]:
        """(newHV of the process: file plus mapped read-only segments, HV of the file).

        `base` is where the program is loaded and `program` its file, if the caller knows them.
        """
        program = program or self.program(pid)
        layout = program.layout
        at = _base(pid, layout) if base is None else base
        memory = {s: view.read_bytes(at + s.vaddr, s.filesz) for s in layout.segments if s.measured}
        if program.matches(memory):
            return program.hv, program.hv
        try:
            return image_hv(program.data, layout, memory), program.hv
        except ValueError as exc:  # a segment read short
            raise MeasurementError(f"the mapped program of {pid} is unreadable: {exc}") from None


def _base(pid: int, layout: ElfLayout) -> int:
    try:
        inode = os.stat(f"/proc/{pid}/exe").st_ino
        starts = [m.start for m in read_maps(pid) if m.inode == inode and m.offset == 0]
    except OSError as exc:
        raise MeasurementError(f"cannot read the mappings of {pid}: {exc}") from None
    if not starts:
        raise MeasurementError(f"process {pid} has no mapping of its program file")
    return min(starts) - layout.link_base
