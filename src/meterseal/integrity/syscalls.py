"""Which system calls are modification behaviours, and how each becomes (action, object).

`TRAPS` is the one table the seccomp filter is built from (a call is trapped only when its
arguments can make it a modification: an open with write flags, an mmap with PROT_EXEC, …)
and the tracer decodes with: a trapped call's index in the table travels as the filter's
SECCOMP_RET_DATA. Decoding reads the tracee through a `TraceeView`, so it stays sans-IO.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from meterseal.integrity.behaviour import Action, Placeholders

AT_FDCWD = -100
PROT_EXEC = 0x4
MAP_ANONYMOUS = 0x20
PTRACE_TRACEME = 0
_WRITE_FLAGS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND)

Args = Sequence[int]


class TraceeView(Protocol):
    """What decoding may learn about the stopped process (its memory, fds, cwd, mappings)."""

    @property
    def tgid(self) -> int:
        """The process (thread group) id."""
        ...

    def read_bytes(self, address: int, size: int) -> bytes:
        """Up to `size` bytes of the tracee's memory at `address`."""
        ...

    def read_string(self, address: int) -> str:
        """The NUL-terminated string at `address` (surrogate-escaped)."""
        ...

    def fd_path(self, fd: int) -> str:
        """What descriptor `fd` refers to (a path, or the kernel's name for it)."""
        ...

    def cwd(self) -> str:
        """The working directory."""
        ...

    def mapping_at(self, address: int) -> str:
        """The file mapped at `address`, or 'anonymous'."""
        ...


Decoder = Callable[[Args, TraceeView, Placeholders], str | None]


@dataclass(frozen=True, slots=True)
class Condition:
    """Trap only when ``args[arg] & mask == mask`` (mask 0: when the argument is non-zero)."""

    arg: int
    mask: int


@dataclass(frozen=True, slots=True)
class Trap:
    """A system call that can be a modification behaviour: when to trap it and how to read it."""

    syscall: str
    action: Action
    decode: Decoder  # the object; None when the arguments make it no modification after all
    when: tuple[Condition, ...] = ()  # trapped if any holds; () traps every call
    path: tuple[int, int] | None = None  # (dirfd argument or -1, path argument): its one path


def s32(value: int) -> int:
    """A register value as the signed 32-bit int a C `int` argument is."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _path_from(view: TraceeView, dirfd: int, address: int) -> str:
    path = view.read_string(address)
    if not os.path.isabs(path):
        base = view.cwd() if s32(dirfd) == AT_FDCWD else view.fd_path(s32(dirfd))
        path = os.path.join(base, path)
    return os.path.realpath(path)


def path_arg(i: int) -> Decoder:
    """The path in argument `i`, relative to the working directory."""
    return lambda a, v, p: p.path(_path_from(v, AT_FDCWD, a[i]))


def path_at(dirfd: int, i: int) -> Decoder:
    """The path in argument `i`, relative to the directory descriptor in argument `dirfd`."""
    return lambda a, v, p: p.path(_path_from(v, a[dirfd], a[i]))


def fd_arg(i: int) -> Decoder:
    """The file a descriptor argument refers to."""
    return lambda a, v, p: p.path(v.fd_path(s32(a[i])))


def renamed(old: Decoder, new: Decoder) -> Decoder:
    """A rename's object: 'old -> new'."""
    return lambda a, v, p: f"{old(a, v, p)} -> {new(a, v, p)}"


def _openat2(a: Args, v: TraceeView, p: Placeholders) -> str | None:
    # struct open_how starts with u64 flags; the filter cannot look inside it, we can.
    raw = v.read_bytes(a[2], 8)
    flags = struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0
    if not any(flags & bit for bit in _WRITE_FLAGS):
        return None
    return p.path(_path_from(v, a[0], a[1]))


def _mapped_file(a: Args, v: TraceeView, p: Placeholders) -> str:
    if a[3] & MAP_ANONYMOUS or s32(a[4]) < 0:
        return "anonymous"
    return p.path(v.fd_path(s32(a[4])))


def _protected(a: Args, v: TraceeView, p: Placeholders) -> str:
    return p.path(v.mapping_at(a[0]))


def sockaddr(v: TraceeView, p: Placeholders, address: int, length: int) -> str:
    """A socket address as an object: inet:HOST:PORT, inet6:[HOST]:PORT, unix:PATH."""
    raw = v.read_bytes(address, min(length, 128))
    if len(raw) < 2:
        return "address:unreadable"
    family = int.from_bytes(raw[:2], "little")
    if family == socket.AF_INET and len(raw) >= 8:
        port = int.from_bytes(raw[2:4], "big")
        return p.address("inet", f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{port}")
    if family == socket.AF_INET6 and len(raw) >= 24:
        port = int.from_bytes(raw[2:4], "big")
        return p.address("inet6", f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{port}")
    if family == socket.AF_UNIX:
        path = raw[2:].split(b"\0", 1)[0] if raw[2:3] != b"\0" else b"@" + raw[3:].rstrip(b"\0")
        name = path.decode(errors="surrogateescape")
        return "unix:" + (p.path(name) if name.startswith("/") else name)
    return f"family:{family}"


def _connect(a: Args, v: TraceeView, p: Placeholders) -> str:
    return sockaddr(v, p, a[1], a[2])


def _sendto(a: Args, v: TraceeView, p: Placeholders) -> str | None:
    return sockaddr(v, p, a[4], a[5]) if a[4] else None


def _sendmsg(a: Args, v: TraceeView, p: Placeholders) -> str | None:
    # struct msghdr { void *msg_name; socklen_t msg_namelen; ... }
    raw = v.read_bytes(a[1], 12)
    if len(raw) < 12:
        return "address:unreadable"
    name, length = struct.unpack("<QI", raw)
    return sockaddr(v, p, name, length) if name else None


def _signame(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _target(v: TraceeView, pid: int) -> str:
    if pid == v.tgid:
        return "self"
    if pid == 0:
        return "own-group"
    return "all" if pid == -1 else "other"


def signal_to(pid_arg: int, sig_arg: int) -> Decoder:
    """kill-like calls: 'self:SIGTERM', 'other:SIGKILL'; signal 0 only probes (no behaviour)."""

    def decode(a: Args, v: TraceeView, p: Placeholders) -> str | None:
        sig = s32(a[sig_arg])
        return f"{_target(v, s32(a[pid_arg]))}:{_signame(sig)}" if sig else None

    return decode


def _ptrace(a: Args, v: TraceeView, p: Placeholders) -> str:
    who = "self" if a[0] == PTRACE_TRACEME else _target(v, s32(a[1]))
    return f"{who}:request-{a[0]}"


def _vm_write(a: Args, v: TraceeView, p: Placeholders) -> str:
    return _target(v, s32(a[0]))


def named(name: str) -> Decoder:
    """Calls whose object is the system itself."""
    return lambda a, v, p: name


_OPEN_WRITE_AT = tuple(Condition(2, bit) for bit in _WRITE_FLAGS)
_OPEN_WRITE = tuple(Condition(1, bit) for bit in _WRITE_FLAGS)

TRAPS: tuple[Trap, ...] = (
    Trap("openat", Action.OPEN_WRITE, path_at(0, 1), _OPEN_WRITE_AT, (0, 1)),
    Trap("open", Action.OPEN_WRITE, path_arg(0), _OPEN_WRITE, (-1, 0)),
    Trap("creat", Action.OPEN_WRITE, path_arg(0), path=(-1, 0)),
    Trap("openat2", Action.OPEN_WRITE, _openat2),
    Trap("execve", Action.EXEC, path_arg(0), path=(-1, 0)),
    Trap("execveat", Action.EXEC, path_at(0, 1), path=(0, 1)),
    Trap("mmap", Action.MAP_EXEC, _mapped_file, (Condition(2, PROT_EXEC),)),
    Trap("mprotect", Action.PROTECT_EXEC, _protected, (Condition(2, PROT_EXEC),)),
    Trap("pkey_mprotect", Action.PROTECT_EXEC, _protected, (Condition(2, PROT_EXEC),)),
    Trap("connect", Action.CONNECT, _connect),
    Trap("sendto", Action.SEND_TO, _sendto, (Condition(4, 0),)),
    Trap("sendmsg", Action.SEND_TO, _sendmsg),
    Trap("sendmmsg", Action.SEND_TO, named("sendmmsg")),
    Trap("unlink", Action.UNLINK, path_arg(0), path=(-1, 0)),
    Trap("unlinkat", Action.UNLINK, path_at(0, 1), path=(0, 1)),
    Trap("rmdir", Action.UNLINK, path_arg(0), path=(-1, 0)),
    Trap("rename", Action.RENAME, renamed(path_arg(0), path_arg(1))),
    Trap("renameat", Action.RENAME, renamed(path_at(0, 1), path_at(2, 3))),
    Trap("renameat2", Action.RENAME, renamed(path_at(0, 1), path_at(2, 3))),
    Trap("truncate", Action.TRUNCATE, path_arg(0), path=(-1, 0)),
    Trap("ftruncate", Action.TRUNCATE, fd_arg(0)),
    Trap("chmod", Action.CHMOD, path_arg(0), path=(-1, 0)),
    Trap("fchmod", Action.CHMOD, fd_arg(0)),
    Trap("fchmodat", Action.CHMOD, path_at(0, 1), path=(0, 1)),
    Trap("kill", Action.SIGNAL, signal_to(0, 1)),
    Trap("tkill", Action.SIGNAL, signal_to(0, 1)),
    Trap("tgkill", Action.SIGNAL, signal_to(0, 2)),
    Trap("rt_sigqueueinfo", Action.SIGNAL, signal_to(0, 1)),
    Trap("rt_tgsigqueueinfo", Action.SIGNAL, signal_to(0, 2)),
    Trap("pidfd_send_signal", Action.SIGNAL, named("pidfd")),
    Trap("ptrace", Action.PTRACE, _ptrace),
    Trap("process_vm_writev", Action.MEMORY_WRITE, _vm_write),
    Trap("init_module", Action.SYSTEM, named("init_module")),
    Trap("finit_module", Action.SYSTEM, named("finit_module")),
    Trap("delete_module", Action.SYSTEM, named("delete_module")),
    Trap("mount", Action.SYSTEM, named("mount")),
    Trap("umount2", Action.SYSTEM, named("umount2")),
    Trap("reboot", Action.SYSTEM, named("reboot")),
    Trap("kexec_load", Action.SYSTEM, named("kexec_load")),
    Trap("kexec_file_load", Action.SYSTEM, named("kexec_file_load")),
)
