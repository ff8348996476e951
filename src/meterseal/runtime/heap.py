"""The memory of a server process that moves megabytes per request: C heap and collector.

glibc's malloc serves a block above its mmap threshold (128 KiB at first, raised as such blocks
are freed) with a fresh mapping, and gives the free top of a heap back to the kernel once it
exceeds its trim threshold. A server that allocates and frees megabytes per request in several
threads (the KVS gateway: 4 MiB chunks, their seals, fragments and decoded copies) then has the
kernel map and zero every page again on every request: a third of the gateway's CPU time on a
16 MiB put went to page faults. `hold_freed_memory` fixes both thresholds, so blocks up to
`largest_block` come from the heap and up to `kept` bytes of freed memory stay mapped for the
next request (what stays is what the process used at its peak, no more). Elsewhere than glibc
it does nothing.

`freeze_startup` moves every object alive once a server is built (modules, the app, its routes
and models) out of the garbage collector's generations: they live as long as the process, and a
full collection no longer walks them (in the KVS gateway one took 80-115 ms, stalling every
request, every few dozen requests; 1 ms after).

`unfilled` is a buffer for a read to fill: a bytearray not zeroed first (`bytearray(n)` writes
every byte twice, its zeros and then the read's, on the event loop's thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from typing import Any

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MAX_MMAP_THRESHOLD = 32 << 20  # glibc refuses more on 64-bit (HEAP_MAX_SIZE / 2)


# PyByteArray_FromStringAndSize(NULL, n): a bytearray whose n bytes are left as allocated.
_new_bytearray = ctypes.pythonapi.PyByteArray_FromStringAndSize
_new_bytearray.restype = ctypes.py_object
_new_bytearray.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]


def unfilled(size: int) -> bytearray:
    """A bytearray of `size` bytes not zeroed: whatever the process's memory held there, so
    only what a read has filled may be used."""
    buffer: bytearray = _new_bytearray(None, size)
    return buffer


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name)


def hold_freed_memory(largest_block: int = MAX_MMAP_THRESHOLD, kept: int = 64 << 20) -> bool:
    """Serve blocks up to `largest_block` bytes from the heap and keep up to `kept` freed
    bytes mapped; whether the C library took both (glibc only)."""
    try:
        libc = _libc()
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    block = min(largest_block, MAX_MMAP_THRESHOLD)
    return bool(mallopt(M_MMAP_THRESHOLD, block)) and bool(mallopt(M_TRIM_THRESHOLD, kept))


def freeze_startup() -> int:
    """Leave the objects alive now out of every future collection (once per process: a later
    call leaves them be); how many are frozen."""
    if gc.get_freeze_count() == 0:
        gc.collect()  # what is garbage already goes first, not kept for good
        gc.freeze()
    return gc.get_freeze_count()
