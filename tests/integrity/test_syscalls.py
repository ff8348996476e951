"""Decoding trapped calls into (action, object) through a fake tracee (sans-IO)."""

from __future__ import annotations

import signal
import socket
import struct
from dataclasses import dataclass, field

from meterseal.integrity.behaviour import Action, Placeholders
from meterseal.integrity.syscalls import AT_FDCWD, TRAPS, Trap


@dataclass
class FakeTracee:
    """Memory as a dict of address -> bytes; fds, cwd and mappings as given."""

    memory: dict[int, bytes] = field(default_factory=dict)
    fds: dict[int, str] = field(default_factory=dict)
    tgid: int = 100

    def read_bytes(self, address: int, size: int) -> bytes:
        return self.memory.get(address, b"")[:size]

    def read_string(self, address: int) -> str:
        return self.memory[address].split(b"\0", 1)[0].decode()

    def fd_path(self, fd: int) -> str:
        return self.fds.get(fd, f"fd:{fd}")

    def cwd(self) -> str:
        return "/work"

    def mapping_at(self, address: int) -> str:
        return "anonymous"


PLACES = Placeholders.of_launch("/opt/meter", ["/work/regs", "127.0.0.1:9000"], "/work")


def trap(name: str) -> Trap:
    return next(t for t in TRAPS if t.syscall == name)


def decode(name: str, args: list[int], tracee: FakeTracee) -> str | None:
    return trap(name).decode((*args, 0, 0, 0, 0, 0, 0)[:6], tracee, PLACES)


def test_paths_resolve_against_cwd_dirfd_and_launch_arguments() -> None:
    t = FakeTracee(
        {1: b"regs/energy.reg\0", 2: b"display.reg\0", 3: b"/etc/passwd\0"}, {5: "/work/regs"}
    )
    assert decode("openat", [AT_FDCWD & 0xFFFFFFFF, 1], t) == "${arg1}/energy.reg"
    assert decode("openat", [5, 2], t) == "${arg1}/display.reg"
    assert decode("open", [3], t) == "/etc/passwd"
    assert decode("rename", [1, 3], t) == "${arg1}/energy.reg -> /etc/passwd"
    assert trap("openat").action is Action.OPEN_WRITE


def test_addresses_signals_and_harmless_arguments() -> None:
    inet = (
        struct.pack("<H", socket.AF_INET) + struct.pack(">H", 9000) + socket.inet_aton("127.0.0.1")
    )
    other = (
        struct.pack("<H", socket.AF_INET) + struct.pack(">H", 4444) + socket.inet_aton("127.0.0.1")
    )
    t = FakeTracee({10: inet + bytes(8), 20: other + bytes(8), 30: b"\0" * 8})
    assert decode("connect", [3, 10, 16], t) == "inet:${arg2}"
    assert decode("connect", [3, 20, 16], t) == "inet:127.0.0.1:4444"
    assert decode("sendto", [3, 0, 0, 0, 0, 0], t) is None  # no address: the connected peer
    assert decode("kill", [100, signal.SIGTERM], t) == "self:SIGTERM"
    assert decode("kill", [7, signal.SIGKILL], t) == "other:SIGKILL"
    assert decode("kill", [7, 0], t) is None  # signal 0 only probes
    assert decode("openat2", [AT_FDCWD & 0xFFFFFFFF, 1, 30], t) is None  # read-only open_how
    assert decode("mmap", [0, 4096, 5, 0x22, 0xFFFFFFFF], t) == "anonymous"


def test_every_trap_names_a_system_call_once() -> None:
    names = [t.syscall for t in TRAPS]
    assert len(names) == len(set(names))
    assert "execve" in names
