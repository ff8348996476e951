"""What the fast path re-checks before it lets a judged call repeat without the monitor (sans-IO).

A trusted judgement of a trapped call depended on inputs the monitor read from the stopped
process and the file system. When the same call comes again (same trap, same registers) and
every one of those inputs is unchanged, the behaviour, f_d and f_v are what they were; the
native loop (tracer_c/fastpath.c) checks exactly that. A `Recipe` lists the inputs of the
behaviour: the stack words unwinding read, the path string, the directory it was relative to,
and the components the monitor's realpath looked at (none may be a symbolic link now, so the
path resolves lexically to the same object). An `ImageCheck` lists those of newHV: the program
file's identity and the bytes every measured segment must have in memory. Both encode to the
little-endian layout fastpath.c reads.
"""

from __future__ import annotations

import os
import posixpath
import struct
from dataclasses import dataclass

Identity = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns
NO_ARGUMENT = -1


def lexical_realpath(path: str) -> tuple[str, tuple[str, ...]]:
    """`os.path.realpath(path)` if no component of it is a symbolic link, and what it lstat()s.

    The walk of posixpath.realpath without its link branch, for an absolute path: the
    components returned are the paths realpath looks at, in order.
    """
    if not path.startswith("/"):
        raise ValueError("an absolute path")
    current, rest, looked_at = "/", path[1:], []
    while rest:
        name, _, rest = rest.partition("/")
        if not name or name == ".":
            continue
        if name == "..":
            current, name = posixpath.split(current)
            if name == "..":
                current = posixpath.join(current, "..", "..")
            continue
        current = posixpath.join(current, name)
        looked_at.append(current)
    return posixpath.abspath(current), tuple(looked_at)


def _blob(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


@dataclass(frozen=True, slots=True)
class Recipe:
    """The inputs of one trusted behaviour of a trapped call, to re-check at its repeats."""

    id: int
    pid: int
    slot: int  # the (process, function) whose behaviour history the judgement used
    trap: int  # index in syscalls.TRAPS (the filter's SECCOMP_RET_DATA)
    rip: int
    rsp: int
    rbp: int
    path_arg: int  # argument holding the path string
    dirfd_arg: int  # argument holding the directory descriptor, NO_ARGUMENT if none
    dirfd: int  # its value (a C int) when the judgement was made
    path: bytes  # the string read at the path argument
    link: str  # /proc/PID/cwd or /proc/PID/fd/N the relative path was joined to ("" if absolute)
    target: str  # what that link read
    looked_at: tuple[str, ...]  # lexical_realpath's components: none may be a link now
    words: tuple[tuple[int, int | None], ...]  # (address, word) unwinding read, None: unreadable

    def encode(self) -> bytes:
        """The layout ms_add_recipe reads."""
        head = struct.pack(
            "<iiiiQQQiii",
            self.id,
            self.pid,
            self.slot,
            self.trap,
            self.rip,
            self.rsp,
            self.rbp,
            self.path_arg,
            self.dirfd_arg,
            self.dirfd,
        )
        parts = [head, _blob(self.path), _blob(os.fsencode(self.link))]
        parts += [_blob(os.fsencode(self.target)), struct.pack("<I", len(self.looked_at))]
        parts += [_blob(os.fsencode(p)) for p in self.looked_at]
        parts.append(struct.pack("<I", len(self.words)))
        parts += [
            struct.pack("<QQB", address, word or 0, word is not None)
            for address, word in self.words
        ]
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """The program file a process must still run and the code it must still have in memory."""

    pid: int
    identity: Identity
    segments: tuple[tuple[int, bytes], ...]  # (runtime address, the file's bytes) per segment

    def encode(self) -> bytes:
        """The layout ms_add_image reads."""
        dev, ino, size, mtime_ns, ctime_ns = self.identity
        parts = [
            struct.pack(
                "<iQQqqqI", self.pid, dev, ino, size, mtime_ns, ctime_ns, len(self.segments)
            )
        ]
        for address, data in self.segments:
            parts.append(struct.pack("<Q", address) + _blob(data))
        return b"".join(parts)
