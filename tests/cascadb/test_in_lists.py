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
