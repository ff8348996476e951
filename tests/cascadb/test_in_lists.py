"""IN over literals and parameters (a set lookup a row): answers as sqlite3's, NULLs included."""

from __future__ import annotations

import sqlite3

import meterseal.cascadb as cascadb

QUERIES = [
    ("SELECT k FROM t WHERE k IN (1, 2.0, NULL, '3') ORDER BY k", ()),
    ("SELECT k FROM t WHERE k NOT IN (1, 2, NULL) ORDER BY k", ()),
    ("SELECT k FROM t WHERE k NOT IN (1, 2) ORDER BY k", ()),
    ("SELECT k FROM t WHERE name IN (?, ?, ?) ORDER BY k", ("b", None, "x")),
    ("SELECT k FROM t WHERE name NOT IN (?, ?) ORDER BY k", ("b", "c")),
    ("SELECT k FROM t WHERE blob IN (x'01', ?) ORDER BY k", (b"\x02",)),
    ("SELECT k, k IN (?, 4) FROM t ORDER BY k", (2,)),
    ("SELECT k FROM t WHERE val IN (1, 2.5) ORDER BY k", ()),
    ("SELECT k FROM t WHERE k IN (SELECT k FROM t WHERE k > 3) ORDER BY k", ()),
]


def test_in_lists_answer_as_sqlite() -> None:
    lite = sqlite3.connect(":memory:")
    ours = cascadb.connect()
    rows = [(1, "a", b"\x01", 1.0), (2, "b", b"\x02", 2.5), (3, None, None, None), (4, "c", b"", 1)]
    for connection in (lite, ours):
        connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, name TEXT, blob BLOB, val REAL)")
        for row in rows:
            connection.execute("INSERT INTO t VALUES (?, ?, ?, ?)", row)
    for sql, params in QUERIES:
        assert ours.execute(sql, params).fetchall() == lite.execute(sql, params).fetchall(), sql


class _CountingKv(cascadb.MemoryKv):
    """A MemoryKv that counts its scans (a scan lists the bucket on the KVS)."""

    scans = 0

    def scan(self, start: bytes, end: bytes | None):  # type: ignore[no-untyped-def]
        self.scans += 1
        return super().scan(start, end)


def test_an_in_list_on_the_last_key_column_is_gets_not_scans() -> None:
    kv = _CountingKv()
    db = cascadb.Database(kv)
    db.execute("CREATE TABLE so (m TEXT, c BIGINT, t BIGINT, PRIMARY KEY (m, c))")
    db.execute("INSERT INTO so VALUES ('a', 1, 10), ('a', 2, 20), ('a', 3, 30), ('b', 2, 5)")
    db.execute("SELECT 1 FROM so WHERE m = 'a' AND c = 1")  # the dictionary, read once
    before = kv.scans
    found = db.execute("SELECT c, t FROM so WHERE m = ? AND c IN (?, ?, ?)", ["a", 3, 1, 9])
    assert found.rows == [(1, 10), (3, 30)]  # in key order; 9 is no key
    assert kv.scans == before
