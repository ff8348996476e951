"""A traced process as /proc shows it: memory, descriptors, mappings, and its program image.

`ProcView` is the `TraceeView` the decoder reads through. `ProcessImage` ties a process to
the ELF file it runs: the file's bytes as /proc/PID/exe gives them (the inode the kernel
executed, even if the path was replaced since), where it is loaded, and so the measurement
of the mapped read-only segments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from meterseal.integrity.elfimage import ElfLayout, Segment, layout_of
from meterseal.integrity.errors import IntegrityError

STRING_LIMIT = 4096
FIRST_READ = 256  # bytes of a string read first


class MeasurementError(IntegrityError):
    """The process could not be measured (it is gone, or its image is not readable)."""


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str


def read_maps(pid: int) -> list[Mapping]:
    """The mappings of process `pid`."""
    found = []
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="surrogateescape") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            path = fields[5].rstrip("\n") if len(fields) > 5 else ""
            found.append(Mapping(start, end, fields[1], int(fields[2], 16), int(fields[4]), path))
    return found


@dataclass
class ProcView:
    """A stopped tracee seen through /proc (the monitor is its tracer, or root)."""

    pid: int
    _mem: int | None = None
    _tgid: int | None = None

    @property
    def tgid(self) -> int:
        """The thread group id of `pid`."""
        if self._tgid is None:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
                self._tgid = next(
                    int(line.split()[1]) for line in status if line.startswith("Tgid:")
                )
        return self._tgid

    def read_bytes(self, address: int, size: int) -> bytes:
        """Up to `size` bytes at `address` (fewer where the mapping ends; none if unmapped)."""
        if self._mem is None:
            self._mem = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        chunks, done = [], 0
        while done < size:
            try:
                chunk = os.pread(self._mem, size - done, address + done)
            except (OSError, OverflowError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks)

    def read_word(self, address: int) -> int | None:
        """The 64-bit little-endian word at `address`, None if unreadable."""
        raw = self.read_bytes(address, 8)
        return int.from_bytes(raw, "little") if len(raw) == 8 else None

    def read_string(self, address: int) -> str:
        """The C string at `address` (cut at STRING_LIMIT bytes)."""
        data = b""
        while len(data) < STRING_LIMIT:
            # Never across a page boundary, so a string that ends just before an unmapped page
            # still reads; a short first read, since most strings (paths) are short.
            step = 4096 - (address + len(data)) % 4096
            if not data:
                step = min(step, FIRST_READ)
            chunk = self.read_bytes(address + len(data), step)
            data += chunk
            if b"\0" in chunk or len(chunk) < step:
                break
        return data.split(b"\0", 1)[0][:STRING_LIMIT].decode(errors="surrogateescape")

    def fd_path(self, fd: int) -> str:
        """The target of /proc/PID/fd/FD, or 'fd:FD' when there is none."""
        try:
            return os.readlink(f"/proc/{self.pid}/fd/{fd}")
        except OSError:
            return f"fd:{fd}"

    def cwd(self) -> str:
        """The working directory."""
        return os.readlink(f"/proc/{self.pid}/cwd")

    def mapping_at(self, address: int) -> str:
        """The file mapped at `address`, 'anonymous' (or '[stack]' and the like) if none."""
        for m in read_maps(self.pid):
            if m.start <= address < m.end:
                return m.path if m.path.startswith("/") else (m.path or "anonymous")
        return "unmapped"

    def close(self) -> None:
        """Close the memory file."""
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None


@dataclass
class ProcessImage:
    """The ELF file a process runs, where it is loaded, and measurements of it."""

    pid: int
    data: bytes
    layout: ElfLayout
    base: int  # load bias: runtime address = base + link-time address

    @classmethod
    def of(cls, pid: int) -> ProcessImage:
        """Read the program file of `pid` and find where it is mapped."""
        try:
            with open(f"/proc/{pid}/exe", "rb") as exe:
                data = exe.read()
            inode = os.stat(f"/proc/{pid}/exe").st_ino
            maps = read_maps(pid)
        except OSError as exc:
            raise MeasurementError(f"cannot read the program of process {pid}: {exc}") from None
        layout = layout_of(data)
        first = [m for m in maps if m.inode == inode and m.offset == 0]
        if not first:
            raise MeasurementError(f"process {pid} has no mapping of its program file")
        return cls(pid, data, layout, min(m.start for m in first) - layout.link_base)

    def memory_segments(self, view: ProcView) -> dict[Segment, bytes]:
        """The measured (read-only) load segments as they are in the process's memory now."""
        return {
            s: view.read_bytes(self.base + s.vaddr, s.filesz)
            for s in self.layout.segments
            if s.measured
        }
