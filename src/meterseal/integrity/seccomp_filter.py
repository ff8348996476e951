"""The seccomp filter that traps only modification behaviours, built with libseccomp.

libseccomp (through pyseccomp) compiles `syscalls.TRAPS` into BPF in the monitor; the child
installs the finished program with two prctl calls between fork and exec, so nothing that
allocates runs in the child. Every other system call is allowed in the kernel at full speed;
a trapped one stops the process before it runs (SECCOMP_RET_TRACE), with its index in TRAPS
as the event message. Other architectures' system calls kill the process (fail closed).
"""

from __future__ import annotations

import ctypes
import functools
import os

from meterseal.integrity.errors import MonitorUnavailable
from meterseal.integrity.syscalls import TRAPS, Trap

NOT_SENSITIVE = 0xFFFF  # event data of a call trapped only because everything is (benchmarks)
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


@functools.lru_cache(maxsize=4)
def compile_filter(traps: tuple[Trap, ...] = TRAPS, *, trap_all: bool = False) -> bytes:
    """The BPF program: TRACE(index) for each trap's conditions, ALLOW (or TRACE) otherwise."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError) as exc:  # pyseccomp raises RuntimeError without the .so
        raise MonitorUnavailable(f"libseccomp is not usable here: {exc}") from None
    default = sc.TRACE(NOT_SENSITIVE) if trap_all else sc.ALLOW
    flt = sc.SyscallFilter(default)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for index, trap in enumerate(traps):
        try:
            number = sc.resolve_syscall(sc.Arch.NATIVE, trap.syscall)
        except (OSError, ValueError):
            continue
        if number < 0:  # not a system call of this architecture
            continue
        if not trap.when:
            flt.add_rule(sc.TRACE(index), number)
        for c in trap.when:
            arg = (
                sc.Arg(c.arg, sc.NE, 0)
                if c.mask == 0
                else sc.Arg(c.arg, sc.MASKED_EQ, c.mask, c.mask)
            )
            flt.add_rule(sc.TRACE(index), number, arg)
    fd = os.memfd_create("meterseal-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as sink:
            flt.export_bpf(sink)
        os.lseek(fd, 0, os.SEEK_SET)
        return _read_all(fd)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


class SeccompProgram:
    """A compiled filter, laid out for prctl before the fork (the child only installs it)."""

    def __init__(self, bpf: bytes) -> None:
        if not bpf or len(bpf) % 8:
            raise MonitorUnavailable("libseccomp produced no BPF program")
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._program = _SockFprog(len(bpf) // 8, ctypes.addressof(self._buffer))
        self._libc = ctypes.CDLL(None, use_errno=True)

    def install(self) -> int:
        """In the child: no new privileges, then the filter; 0 or the errno of the failure."""
        if self._libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return ctypes.get_errno() or 1
        if self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._program), 0, 0):
            return ctypes.get_errno() or 1
        return 0
