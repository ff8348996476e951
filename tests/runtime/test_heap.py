"""The C heap's thresholds, and buffers not zeroed before a read fills them."""

from __future__ import annotations

import gc
import sys

import pytest

from meterseal.runtime import heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_thresholds() -> None:
    assert heap.hold_freed_memory(8 << 20, 32 << 20)
    assert heap.hold_freed_memory()  # the defaults: the largest threshold glibc takes


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
    already = gc.get_freeze_count()
    try:
        frozen = heap.freeze_startup()
        assert frozen > 0
        assert heap.freeze_startup() == frozen  # once per process
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
    if already:
        gc.freeze()  # as it was (another test's server froze its objects)
