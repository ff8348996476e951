"""ON CONFLICT, RETURNING, foreign keys and lastrowid: CascaDB answers as sqlite3 does."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

import meterseal.cascadb as cascadb
from meterseal.cascadb import Database, MemoryKv
from meterseal.cascadb.catalog import Dictionary

SCHEMA = [
    "CREATE TABLE meter (meter_id VARCHAR(64) NOT NULL, region TEXT, "
    "CONSTRAINT pk_meter PRIMARY KEY (meter_id))",
    "CREATE TABLE original (meter_id VARCHAR(64) NOT NULL, counter BIGINT NOT NULL, "
    "energy BIGINT NOT NULL, CONSTRAINT pk_original PRIMARY KEY (meter_id, counter), "
    "CONSTRAINT fk_original_meter_id FOREIGN KEY(meter_id) REFERENCES meter (meter_id))",
    "CREATE TABLE counts (outcome VARCHAR(64) NOT NULL PRIMARY KEY, count BIGINT NOT NULL)",
    "CREATE TABLE tag (id INTEGER NOT NULL PRIMARY KEY, name TEXT UNIQUE, n INTEGER)",
    "INSERT INTO meter VALUES ('m1', 'north'), ('m2', 'south')",
]

# Each step runs on both; its rows (or error class) must agree.
STEPS: list[tuple[str, Sequence[Any]]] = [
    ("INSERT INTO original VALUES (?, ?, ?), (?, ?, ?)", ("m1", 1, 10, "m2", 1, 20)),
    (
        "INSERT INTO original VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?) "
        "ON CONFLICT (meter_id, counter) DO NOTHING RETURNING meter_id, counter",
        ("m1", 1, 99, "m1", 2, 11, "m1", 2, 12),
    ),
    ("INSERT INTO original VALUES ('m1', 3, 1) ON CONFLICT DO NOTHING", ()),
    (
        "INSERT INTO counts (outcome, count) VALUES (?, ?), (?, ?) ON CONFLICT (outcome) "
        "DO UPDATE SET count = (counts.count + excluded.count) RETURNING outcome, count",
        ("stored", 3, "duplicate", 1),
    ),
    (
        "INSERT INTO counts (outcome, count) VALUES (?, ?), (?, ?) ON CONFLICT (outcome) "
        "DO UPDATE SET count = count + excluded.count WHERE excluded.count > 1 RETURNING *",
        ("stored", 2, "duplicate", 1),
    ),
    ("INSERT INTO tag (name, n) VALUES ('a', 1), ('b', 2) RETURNING id, name", ()),
    ("INSERT INTO tag (name, n) VALUES ('a', 5), ('c', 6) ON CONFLICT (name) DO NOTHING", ()),
    (
        "INSERT INTO tag (name, n) VALUES ('b', 7) ON CONFLICT (name) DO UPDATE "
        "SET n = tag.n * 10 + excluded.n RETURNING id, n",
        (),
    ),
    ("UPDATE original SET energy = energy + 1 WHERE meter_id = 'm1' RETURNING counter, energy", ()),
    ("DELETE FROM original WHERE counter = 3 RETURNING meter_id, energy", ()),
    ("INSERT INTO original VALUES ('m9', 1, 1)", ()),  # no meter m9: a foreign key failure
    ("UPDATE original SET meter_id = 'm7' WHERE meter_id = 'm2'", ()),  # the same
    ("INSERT INTO original VALUES ('m9', 1, 1) ON CONFLICT DO NOTHING", ()),  # still refused
    ("INSERT INTO counts VALUES ('x', 1) ON CONFLICT (count) DO NOTHING", ()),  # no such key
    ("DELETE FROM meter WHERE meter_id = 'm1'", ()),  # readings still name m1: refused
    ("UPDATE meter SET meter_id = 'm8' WHERE meter_id = 'm2'", ()),  # the same
    ("UPDATE meter SET region = 'east' WHERE meter_id = 'm2'", ()),  # not the key: fine
    ("INSERT INTO meter VALUES ('m3', NULL)", ()),
    ("DELETE FROM meter WHERE meter_id = 'm3'", ()),  # no reading names m3
    ("SELECT * FROM meter ORDER BY meter_id", ()),
    ("SELECT * FROM original ORDER BY meter_id, counter", ()),
    ("SELECT * FROM counts ORDER BY outcome", ()),
    # Not the ids: a row ON CONFLICT skipped has used its number up in CascaDB (as a
    # PostgreSQL sequence is), while SQLite gives the next row max(rowid) + 1.
    ("SELECT name, n FROM tag ORDER BY name", ()),
]


def _run(execute: Any, sql: str, params: Sequence[Any]) -> tuple[str, Any]:
    try:
        cursor = execute(sql, params)
        return "rows", sorted(cursor.fetchall()) if cursor.description else cursor.rowcount
    except (sqlite3.IntegrityError, cascadb.IntegrityError):
        return "integrity", None
    except (sqlite3.OperationalError, cascadb.ProgrammingError):
        return "programming", None


def test_on_conflict_returning_and_foreign_keys_answer_as_sqlite() -> None:
    lite = sqlite3.connect(":memory:", isolation_level=None)
    lite.execute("PRAGMA foreign_keys=ON")
    ours = cascadb.connect(autocommit=True)
    for sql in SCHEMA:
        lite.execute(sql)
        ours.execute(sql)
    outcomes = []
    for sql, params in STEPS:
        expected, got = _run(lite.execute, sql, params), _run(ours.execute, sql, params)
        assert got == expected, sql
        outcomes.append(got[0])
    assert (outcomes.count("integrity"), outcomes.count("programming")) == (5, 1)


def test_lastrowid_is_the_last_inserted_rowid_as_in_sqlite3() -> None:
    lite = sqlite3.connect(":memory:")
    ours = cascadb.connect()
    for connection in (lite, ours):
        connection.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, packet BLOB NOT NULL)")
        connection.execute("CREATE TABLE plain (x TEXT)")
    for sql in ("INSERT INTO q (packet) VALUES (x'01'), (x'02')", "INSERT INTO plain VALUES ('a')"):
        assert ours.execute(sql).lastrowid == lite.execute(sql).lastrowid


def test_a_foreign_key_needs_a_key_of_its_parent() -> None:
    db = Database(MemoryKv())
    db.execute("CREATE TABLE p (a TEXT, b TEXT)")
    db.execute("CREATE TABLE c (x TEXT REFERENCES p(b))")
    with pytest.raises(cascadb.ProgrammingError, match="foreign key mismatch"):
        db.execute("INSERT INTO c VALUES ('v')")
    db.execute("INSERT INTO c VALUES (NULL)")  # NULL names no parent, so needs none


def test_a_parent_row_named_by_a_child_stays_and_its_table_too() -> None:
    db = Database(MemoryKv())
    db.execute("CREATE TABLE c (x TEXT REFERENCES p(a), y INTEGER)")  # before its parent
    db.execute("CREATE TABLE p (a TEXT PRIMARY KEY, b INTEGER)")
    db.execute("INSERT INTO p VALUES ('k', 1), ('j', 2)")
    db.execute("INSERT INTO c VALUES ('k', 1)")
    for sql in ("DELETE FROM p", "UPDATE p SET a = 'z' WHERE a = 'k'"):
        with pytest.raises(cascadb.IntegrityError, match="still refers") as refused:
            db.execute(sql)
        assert refused.value.sqlstate == "23503"
    with pytest.raises(cascadb.ProgrammingError, match="refers to it") as dropping:
        db.execute("DROP TABLE p")
    assert dropping.value.sqlstate == "2BP01"
    db.execute("UPDATE p SET b = 3 WHERE a = 'k'")  # not the referred column
    assert db.execute("DELETE FROM p WHERE a = 'j'").rowcount == 1  # no child names 'j'
    db.execute("DROP TABLE c")
    assert db.execute("DELETE FROM p").rowcount == 1
    db.execute("DROP TABLE p")


@pytest.mark.parametrize(
    "option", ["ON DELETE CASCADE", "ON UPDATE SET NULL", "DEFERRABLE INITIALLY DEFERRED"]
)
def test_a_foreign_key_action_not_taken_is_refused_not_ignored(option: str) -> None:
    db = Database(MemoryKv())
    db.execute("CREATE TABLE p (a TEXT PRIMARY KEY)")
    db.execute("CREATE TABLE ok (x TEXT REFERENCES p(a) ON DELETE RESTRICT ON UPDATE NO ACTION)")
    with pytest.raises(cascadb.NotSupportedError, match="foreign key"):
        db.execute(f"CREATE TABLE c (x TEXT REFERENCES p(a) {option})")
    assert db.execute("SELECT count(*) FROM ok").rows == [(0,)]


def test_a_parent_described_before_the_referrers_list_is_checked_all_the_same() -> None:
    db = Database(MemoryKv())
    db.execute("CREATE TABLE p (a TEXT PRIMARY KEY)")
    db.execute("CREATE TABLE c (x TEXT REFERENCES p(a))")
    db.execute("INSERT INTO p VALUES ('k'), ('j')")
    db.execute("INSERT INTO c VALUES ('k')")
    dictionary = Dictionary(db.kv)
    dictionary.save(replace(dictionary.require("p"), referenced_by=None))  # as stored before
    db.tables.clear()
    with pytest.raises(cascadb.IntegrityError, match="still refers"):
        db.execute("DELETE FROM p WHERE a = 'k'")
    assert db.execute("DELETE FROM p WHERE a = 'j'").rowcount == 1
    assert Dictionary(db.kv).require("p").referenced_by == ("c",)  # found once, then kept
    with pytest.raises(cascadb.ProgrammingError, match="refers to it"):
        db.execute("DROP TABLE p")
