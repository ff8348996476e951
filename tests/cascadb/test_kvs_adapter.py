"""CascaDB on the secure KVS (memory nodes): hex names in key order, atomic batches, SQL."""

from __future__ import annotations

from collections.abc import Iterator

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meterseal.cascadb as cascadb
from meterseal.cascadb.errors import DataError
from meterseal.cascadb.kv import MemoryKv
from meterseal.cascadb.kvs_adapter import KvsOrderedKv, LoopThread
from meterseal.cascadb.names import INTENT, name_of
from tests.kvs.store_fixtures import memory_store


@pytest.fixture(scope="module")
def runner() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


def _kv(runner: LoopThread, bucket: str = "cascadb") -> KvsOrderedKv:
    store, _, _ = memory_store(3, chunk_size=4096)
    return KvsOrderedKv(store, bucket, runner)


@settings(max_examples=25, deadline=None)
@given(a=st.binary(min_size=1, max_size=40), b=st.binary(min_size=1, max_size=40))
def test_names_sort_as_their_keys(a: bytes, b: bytes) -> None:
    assert (name_of(a) < name_of(b)) == (a < b)
    assert bytes.fromhex(name_of(a)) == a
    assert name_of(a) < INTENT


def test_long_keys_are_refused() -> None:
    with pytest.raises(DataError):
        name_of(b"x" * 513)


@settings(max_examples=15, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.binary(min_size=1, max_size=3), st.none() | st.binary(max_size=3)),
        max_size=12,
    ),
    start=st.binary(max_size=2),
)
def test_the_kvs_answers_as_memory_does(
    runner: LoopThread, writes: list[tuple[bytes, bytes | None]], start: bytes
) -> None:
    kvs, memory = _kv(runner), MemoryKv()
    for kv in (kvs, memory):
        kv.write(writes)
    assert list(kvs.scan(start, None)) == list(memory.scan(start, None))
    assert list(kvs.scan(b"", start)) == list(memory.scan(b"", start))
    for key, _ in writes:
        assert kvs.get(key) == memory.get(key)


def test_a_batch_a_crash_interrupted_is_finished_on_open(runner: LoopThread) -> None:
    store, _, _ = memory_store(3, chunk_size=4096)
    kvs = KvsOrderedKv(store, "b", runner)
    kvs.put(b"\x01", b"old")
    half_done = [(name_of(b"\x01"), None), (name_of(b"\x02"), b"new")]
    runner.run(store.put_bytes("b", INTENT, cbor2.dumps(half_done)))  # crashed before applying
    reopened = KvsOrderedKv(store, "b", runner)
    assert list(reopened.scan(b"", None)) == [(b"\x02", b"new")]
    assert not reopened.recover()


def test_sql_over_the_kvs(runner: LoopThread) -> None:
    connection = cascadb.connect(_kv(runner), autocommit=True)
    connection.execute(
        "CREATE TABLE reading(meter TEXT, ts INTEGER, kwh REAL, PRIMARY KEY (meter, ts))"
    )
    connection.execute("CREATE INDEX reading_kwh ON reading(kwh)")
    rows = [("m1", t, t / 4) for t in range(12)] + [("m2", t, 1.0) for t in range(3)]
    connection.execute(
        "INSERT INTO reading VALUES " + ", ".join("(?, ?, ?)" for _ in rows),
        [v for row in rows for v in row],
    )
    month = connection.execute("SELECT ts FROM reading WHERE meter = 'm1' AND ts >= 10")
    assert month.fetchall() == [(10,), (11,)]
    assert connection.execute("SELECT COUNT(*) FROM reading WHERE kwh = 1").fetchall() == [(4,)]
    connection.execute("UPDATE reading SET kwh = 9 WHERE meter = 'm2'")
    assert connection.execute("SELECT meter, SUM(kwh) FROM reading GROUP BY meter").fetchall() == [
        ("m1", sum(t / 4 for t in range(12))),
        ("m2", 27.0),
    ]
