"""The C heap's thresholds, and buffers not zeroed before a read fills them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meterseal.runtime import heap


def in_own_process(code: str) -> str:
    """What `code` prints, run in a process of its own: the heap's thresholds and the
    collector's frozen objects are process-wide, never this test run's to change."""
    done = subprocess.run(
        [sys.executable, "-c", "from meterseal.runtime import heap\n" + code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_thresholds() -> None:
    code = "print(heap.hold_freed_memory(8 << 20, 32 << 20), heap.hold_freed_memory())"
    assert in_own_process(code) == "True True"  # the defaults: the largest glibc takes


def test_without_mallopt_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_libc", lambda: None)
    assert not heap.hold_freed_memory()

    class NoMallopt:
        pass

    monkeypatch.setattr(heap, "_libc", NoMallopt)
    assert not heap.hold_freed_memory()


def test_an_unfilled_buffer_is_a_bytearray_of_its_size() -> None:
    buffer = heap.unfilled(1 << 20)
    assert type(buffer) is bytearray
    assert len(buffer) == 1 << 20
    memoryview(buffer)[:5] = b"meter"
    assert buffer[:5] == b"meter"
    assert heap.unfilled(0) == bytearray()


def test_objects_alive_at_startup_are_frozen_out_of_collections() -> None:
    code = "frozen = heap.freeze_startup()\nprint(frozen > 0, heap.freeze_startup() == frozen)"
    assert in_own_process(code) == "True True"  # once per process
