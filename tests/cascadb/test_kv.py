"""MemoryKv and the Overlay answer as a sorted dict would, batches applied whole."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meterseal.cascadb.kv import MemoryKv, Overlay

KEYS = st.binary(max_size=3)
WRITES = st.lists(st.tuples(KEYS, st.none() | st.binary(max_size=2)), max_size=30)


def _apply(model: dict[bytes, bytes], writes: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in writes:
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value


def _range(model: dict[bytes, bytes], start: bytes, end: bytes | None) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in model.items() if k >= start and (end is None or k < end))


@given(WRITES, WRITES, KEYS, st.none() | KEYS)
def test_an_overlay_reads_its_writes_over_the_store(
    first: list[tuple[bytes, bytes | None]],
    second: list[tuple[bytes, bytes | None]],
    start: bytes,
    end: bytes | None,
) -> None:
    store = MemoryKv()
    model: dict[bytes, bytes] = {}
    store.write(first)
    _apply(model, first)
    overlay = Overlay(store)
    for key, value in second:
        overlay.put(key, value) if value is not None else overlay.delete(key)
    before = dict(model)
    _apply(model, second)
    assert list(overlay.scan(start, end)) == _range(model, start, end)
    assert list(store.scan(start, end)) == _range(before, start, end)  # nothing applied yet
    for key, _ in second:
        assert overlay.get(key) == model.get(key)
    overlay.commit()
    assert list(store.scan(b"", None)) == _range(model, b"", None)
    assert len(store) == len(model)
    assert not overlay.dirty


def test_a_rolled_back_overlay_leaves_the_store_alone() -> None:
    store = MemoryKv()
    store.put(b"a", b"1")
    overlay = Overlay(store)
    overlay.delete(b"a")
    overlay.put(b"b", b"2")
    overlay.rollback()
    overlay.commit()
    assert list(store.scan(b"", None)) == [(b"a", b"1")]
