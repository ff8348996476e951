"""CascaDB's SQL over a MemoryKv: key layout, plans, atomic statements, the PEP 249 driver."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

import meterseal.cascadb as cascadb
from meterseal.cascadb import Database, MemoryKv
from meterseal.cascadb.catalog import Dictionary
from meterseal.cascadb.keys import Value, decode_key, table_prefix
from meterseal.errors import MetersealError

READINGS = """
CREATE TABLE reading(client TEXT, ts INTEGER, kwh DECIMAL(10, 3), quality TEXT,
                     PRIMARY KEY (client, ts));
CREATE TABLE customer(client TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT);
CREATE INDEX reading_kwh ON reading(kwh);
"""


@pytest.fixture
def db() -> Database:
    database = Database(MemoryKv())
    database.execute(READINGS)
    session = database.session()
    rows = [("c9", 9, "0.5", "ok"), ("c10", 10, "1.25", "ok"), ("c9", 10, "2", "est")]
    for row in rows:
        session.execute("INSERT INTO reading VALUES (?, ?, ?, ?)", row)
    session.execute(
        "INSERT INTO customer VALUES ('c9', 'Nine', 'north'), ('c10', 'Ten', NULL), "
        "('c11', 'Eleven', 'south')"
    )
    return database


def _kv(db: Database) -> MemoryKv:
    assert isinstance(db.kv, MemoryKv)
    return db.kv


def test_an_insert_is_a_key_of_table_and_primary_key_and_a_value_of_the_rest(db: Database) -> None:
    table = Dictionary(db.kv).require("reading")
    rows = list(db.kv.scan(table.rows_prefix(), table.rows_prefix() + b"\xff"))
    keys = [decode_key(k[len(table.rows_prefix()) :])[0] for k, _ in rows]
    assert keys == [["c10", 10], ["c9", 9], ["c9", 10]]  # text order, then 9 before 10
    assert table.decode_row(*rows[1]) == ("c9", 9, Decimal("0.5"), "ok")


def test_point_prefix_and_range_selects_read_one_key_range(db: Database) -> None:
    point = db.execute("SELECT kwh FROM reading WHERE client = ? AND ts = ?", ["c9", 10])
    assert point.rows == [(Decimal("2"),)]
    assert point.plan == ["primary key of reading on client = $1, ts = $2"]
    prefix = db.execute("SELECT ts FROM reading WHERE client = 'c9'")
    assert prefix.rows == [(9,), (10,)]
    ranged = db.execute("SELECT ts FROM reading WHERE client = 'c9' AND ts > 9 AND ts <= 10")
    assert ranged.rows == [(10,)]
    assert "ts > 9" in ranged.plan[0]
    assert "ts <= 10" in ranged.plan[0]
    like = db.execute("SELECT client, ts FROM reading WHERE client LIKE 'c1%'")
    assert like.rows == [("c10", 10)]
    assert like.plan[0].startswith("primary key of reading on")


def test_other_predicates_go_through_an_index_or_a_scan(db: Database) -> None:
    by_index = db.execute("SELECT client, ts FROM reading WHERE kwh BETWEEN 1 AND 2 ORDER BY ts")
    assert by_index.rows == [("c10", 10), ("c9", 10)]
    assert by_index.plan[0].startswith("index reading_kwh of reading")
    scanned = db.execute("SELECT client FROM reading WHERE quality = 'est'")
    assert scanned.rows == [("c9",)]
    assert scanned.plan[0] == "full scan of reading"


def test_aggregates_group_by_having_order_limit_offset(db: Database) -> None:
    result = db.execute(
        "SELECT client, COUNT(*) AS n, SUM(kwh), AVG(ts), MIN(kwh), MAX(ts) FROM reading "
        "GROUP BY client HAVING COUNT(*) >= 1 ORDER BY n DESC, client LIMIT 5 OFFSET 0"
    )
    assert result.rows == [
        ("c9", 2, Decimal("2.5"), 9.5, Decimal("0.5"), 10),
        ("c10", 1, Decimal("1.25"), 10.0, Decimal("1.25"), 10),
    ]
    assert db.execute("SELECT ts FROM reading ORDER BY ts, client LIMIT 1 OFFSET 1").rows == [(10,)]
    assert db.execute("SELECT COUNT(*), SUM(ts) FROM reading WHERE ts > 99").rows == [(0, None)]


def test_joins_merge_on_key_order_else_index_or_hash(db: Database) -> None:
    merged = db.execute(
        "SELECT c.name, r.ts FROM customer c JOIN reading r ON r.client = c.client ORDER BY 1, 2"
    )
    assert merged.rows == [("Nine", 9), ("Nine", 10), ("Ten", 10)]
    assert merged.plan[1].startswith("merge join")
    left = db.execute(
        "SELECT c.name, r.ts FROM customer c LEFT JOIN reading r ON r.client = c.client "
        "WHERE c.region IS NOT NULL OR r.ts IS NULL ORDER BY c.name, r.ts"
    )
    assert left.rows == [("Eleven", None), ("Nine", 9), ("Nine", 10)]
    hashed = db.execute(
        "SELECT r.ts, c.name FROM reading r JOIN customer c ON c.region = r.quality"
    )
    assert hashed.rows == []
    assert hashed.plan[1].startswith("hash join")
    indexed = db.execute(
        "SELECT r.client, c.name FROM reading r JOIN customer c ON c.client = r.client "
        "WHERE r.kwh > 1 ORDER BY 1"  # read through reading_kwh: not in key order, no merge
    )
    assert indexed.rows == [("c10", "Ten"), ("c9", "Nine")]
    assert indexed.plan[1].startswith("index join: primary key of customer")


def _index_entries(db: Database) -> list[list[Value]]:
    table = Dictionary(db.kv).require("reading")
    index = table.index_named("reading_kwh")
    assert index is not None
    prefix = table_prefix(table.id, index.id)
    return [decode_key(k[len(prefix) :])[0] for k, _ in db.kv.scan(prefix, prefix + b"\xff")]


def test_updates_and_deletes_keep_the_index_in_step(db: Database) -> None:
    assert db.execute("UPDATE reading SET kwh = kwh * 10 WHERE client = 'c9'").rowcount == 2
    assert _index_entries(db) == [
        [Decimal("1.25"), "c10", 10],
        [Decimal("5.0"), "c9", 9],
        [Decimal("20"), "c9", 10],
    ]
    assert db.execute("UPDATE reading SET ts = ts + 100 WHERE kwh > 10").rowcount == 1
    assert db.execute("SELECT ts FROM reading WHERE kwh = 20").rows == [(110,)]
    assert db.execute("DELETE FROM reading WHERE ts > 9").rowcount == 2
    assert _index_entries(db) == [[Decimal("5.0"), "c9", 9]]


def test_a_failing_statement_leaves_nothing(db: Database) -> None:
    before = list(db.kv.scan(b"", None))
    with pytest.raises(cascadb.IntegrityError, match="UNIQUE constraint failed"):
        db.execute("INSERT INTO reading VALUES ('c1', 1, 1, 'ok'), ('c9', 9, 1, 'dup')")
    with pytest.raises(cascadb.IntegrityError, match="NOT NULL"):
        db.execute("INSERT INTO customer VALUES ('c12', NULL, NULL)")
    assert list(db.kv.scan(b"", None)) == before


def test_unique_indexes_and_drop_remove_every_key(db: Database) -> None:
    db.execute("CREATE UNIQUE INDEX customer_name ON customer(name)")
    with pytest.raises(cascadb.IntegrityError):
        db.execute("UPDATE customer SET name = 'Nine' WHERE client = 'c10'")
    db.execute("DROP TABLE reading")
    db.execute("DROP TABLE customer")
    keys = [decode_key(k)[0][:2] for k, _ in db.kv.scan(b"", None)]
    assert all(k[0] == 0 for k in keys)  # only the dictionary's counters remain
    with pytest.raises(cascadb.ProgrammingError, match="no such table"):
        db.execute("SELECT * FROM reading")


def test_errors_are_pep_249_and_meterseal_errors() -> None:
    db = Database(MemoryKv())
    for sql, kind in [
        ("SELEC 1", cascadb.ProgrammingError),
        ("SELECT nope FROM nowhere", cascadb.ProgrammingError),
        ("SELECT 1 FROM a RIGHT JOIN b ON 1", cascadb.NotSupportedError),
        ("SELECT ?", cascadb.ProgrammingError),
    ]:
        with pytest.raises(kind) as caught:
            db.execute(sql)
        assert isinstance(caught.value, MetersealError)
        assert isinstance(caught.value, cascadb.DatabaseError)


def test_the_driver_commits_rolls_back_and_describes() -> None:
    store = MemoryKv()
    with cascadb.connect(store) as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        cursor.executemany("INSERT INTO t(v) VALUES (?)", [["a"], ["b"], ["c"]])
        assert cursor.rowcount == 3
    other = cascadb.connect(store)
    cursor = other.execute("SELECT id, v FROM t WHERE id >= ? ORDER BY id", [2])
    assert cursor.description is not None
    assert [d[0] for d in cursor.description] == ["id", "v"]
    assert cursor.fetchone() == (2, "b")
    assert cursor.fetchall() == [(3, "c")]
    other.execute("DELETE FROM t")
    other.rollback()
    assert other.execute("SELECT COUNT(*) FROM t").fetchall() == [(3,)]
    other.close()
    with pytest.raises(cascadb.InterfaceError):
        other.cursor().execute("SELECT 1")
    assert (cascadb.apilevel, cascadb.paramstyle) == ("2.0", "qmark")


def test_transactions_run_one_at_a_time_and_indexes_stay_consistent() -> None:
    store = MemoryKv()
    setup = cascadb.connect(store, autocommit=True)
    setup.execute("CREATE TABLE meter(id INTEGER PRIMARY KEY, total INTEGER, band TEXT)")
    setup.execute("CREATE INDEX meter_band ON meter(band)")
    setup.execute("INSERT INTO meter VALUES (1, 0, 'b0'), (2, 0, 'b0')")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        connection = cascadb.connect(store)
        try:
            for i in range(25):
                cursor = connection.cursor()
                total = cursor.execute("SELECT total FROM meter WHERE id = ?", [1 + i % 2])
                value = total.fetchall()[0][0]
                cursor.execute(
                    "UPDATE meter SET total = ?, band = ? WHERE id = ?",
                    [value + 1, f"b{(value + n) % 3}", 1 + i % 2],
                )
                connection.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    totals = setup.execute("SELECT SUM(total) FROM meter").fetchall()
    assert totals == [(100,)]  # no lost update: read-modify-write transactions serialized
    by_band = setup.execute("SELECT id FROM meter WHERE band IN ('b0', 'b1', 'b2') ORDER BY id")
    assert by_band.fetchall() == [(1,), (2,)]  # each row reached through its one index entry
    table = Dictionary(store).require("meter")
    index = table.index_named("meter_band")
    assert index is not None
    prefix = table_prefix(table.id, index.id)
    assert len(list(store.scan(prefix, prefix + b"\xff"))) == 2


@pytest.mark.parametrize(
    "sql",
    [
        "WITH x AS (INSERT INTO customer VALUES ('c12', 'Twelve', NULL)) SELECT 1",
        "WITH x AS (DELETE FROM customer RETURNING client) SELECT 1",
        "WITH customer AS (SELECT 'c0' AS client) SELECT client FROM customer",
        "SELECT (WITH x AS (SELECT 1) SELECT 2)",
        "WITH x AS (SELECT 1) SELECT 1 UNION SELECT 2",
        "WITH x AS (SELECT 'c13') INSERT INTO customer VALUES ('c13', 'Thirteen', NULL)",
        "INSERT INTO customer WITH x AS (SELECT 1) SELECT 'c14', 'Fourteen', NULL",
    ],
)
def test_a_with_clause_is_refused_not_left_unread(db: Database, sql: str) -> None:
    # The WITH clause was never read: its INSERT or DELETE was dropped while the SELECT
    # answered, and a common table expression named as a table read the table instead
    with pytest.raises(cascadb.NotSupportedError, match="WITH"):
        db.execute(sql)
    clients = db.execute("SELECT client FROM customer ORDER BY client").rows
    assert clients == [("c10",), ("c11",), ("c9",)]
