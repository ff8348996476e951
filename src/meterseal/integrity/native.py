"""The tracer's native wait loop and fast path (tracer_c/fastpath.c), built with gcc at run time.

The library is compiled once per process into a private temporary directory (gcc is already
required to build the meter) and loaded with ctypes; the directory is removed once the library
is mapped. `FastPath` is one monitored run's session. The tracer thread serves its stops
through it: ctypes releases the GIL while the loop waits and re-checks; a stop for the monitor
returns to Python on the same thread (so the ptrace calls still come from the tracer), and so
does a signal that interrupts the wait (so Ctrl-C stops the monitor). The monitor registers
what a repeated trusted call may be re-checked against (`recipe.Recipe`, `recipe.ImageCheck`).
Where gcc is missing, the tracer's Python loop serves every stop instead.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from meterseal.integrity.build import compile_c
from meterseal.integrity.errors import MonitorUnavailable

CFLAGS = ("-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-pthread")
DRAIN = 4096  # re-checked stops moved out per call

StopHandler = Callable[[int, int, int | None], bool]  # (pid, status, event message) -> over?


def source() -> Path:
    """Path of fastpath.c inside the installed package."""
    return Path(str(resources.files("meterseal.integrity") / "tracer_c" / "fastpath.c"))


@functools.lru_cache(maxsize=1)
def library() -> Any:
    """The loaded library (built on first use); MonitorUnavailable if it cannot be built."""
    compiler = shutil.which("gcc")
    if compiler is None:
        raise MonitorUnavailable("gcc not found: the tracer's fast path cannot be built")
    with tempfile.TemporaryDirectory(prefix="meterseal-fastpath-") as private:  # mode 0700
        out = Path(private) / "fastpath.so"
        compile_c(compiler, CFLAGS, source(), out, MonitorUnavailable)
        lib = ctypes.CDLL(str(out))  # mapped: the file may go with its directory
    return _declare(lib)


def available() -> str | None:
    """None if the fast path can be used here, else why not."""
    try:
        library()
    except MonitorUnavailable as exc:
        return str(exc)
    return None


def _declare(lib: Any) -> Any:
    session, buffer, size = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "ms_new": (session, [ctypes.c_int]),
        "ms_free": (None, [session]),
        "ms_forget": (None, [session, ctypes.c_int]),
        "ms_drop_slot": (None, [session, ctypes.c_int, ctypes.c_int]),
        "ms_add_image": (ctypes.c_int, [session, buffer, size]),
        "ms_add_recipe": (ctypes.c_int, [session, buffer, size]),
        "ms_drain": (
            ctypes.c_int,
            [
                session,
                ctypes.POINTER(ctypes.c_int),
                ctypes.POINTER(ctypes.c_int),
                ctypes.POINTER(ctypes.c_int64),
                ctypes.c_int,
            ],
        ),
        "ms_watch_interrupts": (ctypes.c_int, []),
        "ms_hits": (ctypes.c_uint64, [session]),
        "ms_passed": (ctypes.c_uint64, [session]),
        "ms_next": (
            ctypes.c_int,
            [
                session,
                ctypes.c_int,
                ctypes.POINTER(ctypes.c_int),
                ctypes.POINTER(ctypes.c_int),
                ctypes.POINTER(ctypes.c_ulong),
                ctypes.POINTER(ctypes.c_int),
            ],
        ),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


class FastPath:
    """One run's native session: its wait loop, recipes and queue of re-checked stops."""

    def __init__(self, *, unsafe_resume_all: bool = False) -> None:
        """`unsafe_resume_all` resumes every trapped call unjudged: the benchmark's floor only."""
        self._lib = library()
        self._lib.ms_watch_interrupts()  # Ctrl-C between two waits must still end the loop
        self._session = self._lib.ms_new(1 if unsafe_resume_all else 0)
        if not self._session:
            raise MemoryError("the fast path session could not be allocated")

    def serve(self, pgid: int, on_stop: StopHandler) -> None:
        """Serve process group `pgid`'s stops; `on_stop` gets those not re-checked natively.

        It returns whether the run is over (no traced process left).
        """
        pid, status, msg, has_msg = ctypes.c_int(), ctypes.c_int(), ctypes.c_ulong(), ctypes.c_int()
        refs = (ctypes.byref(pid), ctypes.byref(status), ctypes.byref(msg), ctypes.byref(has_msg))
        while True:
            code = self._lib.ms_next(self._session, pgid, *refs)
            if code == 0:
                return  # no traced process is left
            if code == -errno.EINTR:
                continue  # back in Python, its signal handlers ran (Ctrl-C raised here)
            if code < 0:
                raise OSError(-code, "waiting for the traced processes failed")
            if on_stop(pid.value, status.value, msg.value if has_msg.value else None):
                return

    def add_image(self, encoded: bytes) -> None:
        """Register what a process's program must still be (`recipe.ImageCheck.encode`)."""
        if self._lib.ms_add_image(self._session, encoded, len(encoded)) != 0:
            raise ValueError("the fast path refused an image check")

    def add_recipe(self, encoded: bytes) -> None:
        """Register a judged call that may be re-checked (`recipe.Recipe.encode`)."""
        if self._lib.ms_add_recipe(self._session, encoded, len(encoded)) != 0:
            raise ValueError("the fast path refused a recipe")

    def drop_slot(self, pid: int, slot: int) -> None:
        """Forget the recipes of one behaviour slot (its history changed)."""
        self._lib.ms_drop_slot(self._session, pid, slot)

    def forget(self, pid: int) -> None:
        """Forget everything kept for `pid` (it exec'd or exited)."""
        self._lib.ms_forget(self._session, pid)

    def drain(self) -> list[tuple[int, int, int]]:
        """The stops re-checked and resumed since the last drain: (recipe id, pid, time ns)."""
        ids, pids = (ctypes.c_int * DRAIN)(), (ctypes.c_int * DRAIN)()
        times = (ctypes.c_int64 * DRAIN)()
        found: list[tuple[int, int, int]] = []
        while True:
            n = self._lib.ms_drain(self._session, ids, pids, times, DRAIN)
            found.extend((ids[i], pids[i], times[i]) for i in range(n))
            if n < DRAIN:
                return found

    @property
    def hits(self) -> int:
        """Trapped calls resumed by the fast path."""
        return int(self._lib.ms_hits(self._session))

    @property
    def passed(self) -> int:
        """Calls trapped only because every call is (the benchmark's trap-all mode)."""
        return int(self._lib.ms_passed(self._session))

    def close(self) -> None:
        """Free the session."""
        if self._session:
            self._lib.ms_free(self._session)
            self._session = None
