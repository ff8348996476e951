"""Differential tests: random schemas, rows and queries on keys give SQLite's answers."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.cascadb import Database, Error, MemoryKv

TYPES = {
    "INTEGER": st.integers(-20, 20),
    "TEXT": st.sampled_from(["", "a", "ab", "b", "B", "10", "9", "a%"]),
    "REAL": st.sampled_from([-1.5, 0.0, 0.25, 2.0, 9.0, 10.0]),
}
COLUMNS = ["k1", "k2", "v1", "v2"]


@st.composite
def schemas(draw: st.DrawFn) -> tuple[dict[str, str], list[str], str | None]:
    """Column types, the primary key (one or two columns) and an optional indexed column."""
    types = {c: draw(st.sampled_from(sorted(TYPES))) for c in COLUMNS}
    key = ["k1"] if draw(st.booleans()) else ["k1", "k2"]
    index = draw(st.sampled_from([None, "v1", "v2", "k2"]))
    return types, key, index


def _value(types: dict[str, str], column: str) -> st.SearchStrategy[Any]:
    return (
        st.one_of(st.none(), TYPES[types[column]])
        if column.startswith("v")
        else TYPES[types[column]]
    )


@st.composite
def conditions(draw: st.DrawFn, types: dict[str, str]) -> str:
    """A WHERE condition on one column: equality, range, BETWEEN, IN, LIKE, IS NULL."""
    column = draw(st.sampled_from(COLUMNS))
    value = draw(TYPES[types[column]])
    other = draw(TYPES[types[column]])
    shape = draw(
        st.sampled_from(["=", "<", "<=", ">", ">=", "<>", "between", "in", "like", "null"])
    )
    if shape == "between":
        return f"{column} BETWEEN {_sql(value)} AND {_sql(other)}"
    if shape == "in":
        return f"{column} IN ({_sql(value)}, {_sql(other)})"
    if shape == "like":
        return f"{column} LIKE {_sql(str(value)[:1] + '%')}"
    if shape == "null":
        return f"{column} IS NULL"
    return f"{column} {shape} {_sql(value)}"


def _sql(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _normal(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def cell(v: Any) -> Any:
        if isinstance(v, float):
            return ("n", round(v, 9)) if math.isfinite(v) else ("f", str(v))
        if isinstance(v, int):
            return ("n", float(v))
        return ("s", "" if v is None else "\x00") if v is None or v == "" else ("s", v)

    return sorted(tuple(cell(v) for v in row) for row in rows)


class Pair:
    """The same statements against SQLite and CascaDB."""

    def __init__(self) -> None:
        self.lite = sqlite3.connect(":memory:", isolation_level=None)
        self.cascadb = Database(MemoryKv()).session()

    def both(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, Any]:
        """Each side's rows, or the kind of error it raised ('error')."""
        try:
            cursor = self.lite.execute(sql, params)
            lite: Any = cursor.fetchall() if cursor.description else None
        except sqlite3.Error:
            lite = "error"
        try:
            result = self.cascadb.execute(sql, params)
            mine: Any = result.rows if result.columns is not None else None
        except Error:
            mine = "error"
        return lite, mine

    def same(self, sql: str, params: tuple[Any, ...] = (), *, ordered: bool = False) -> None:
        """Assert both sides agree (as multisets unless `ordered`)."""
        lite, mine = self.both(sql, params)
        if isinstance(lite, list) and isinstance(mine, list) and not ordered:
            lite, mine = _normal(lite), _normal(mine)
        assert mine == lite, sql


def _create(pair: Pair, types: dict[str, str], key: list[str], index: str | None) -> None:
    columns = ", ".join(f"{c} {types[c]}" for c in COLUMNS)
    pair.same(f"CREATE TABLE t({columns}, PRIMARY KEY ({', '.join(key)}))")
    if index is not None:
        pair.same(f"CREATE INDEX t_i ON t({index})")


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(data=st.data(), schema=schemas())
def test_selects_on_keys_and_indexes_answer_as_sqlite(
    data: st.DataObject, schema: tuple[dict[str, str], list[str], str | None]
) -> None:
    types, key, index = schema
    pair = Pair()
    _create(pair, types, key, index)
    rows = data.draw(st.lists(st.tuples(*(_value(types, c) for c in COLUMNS)), max_size=25))
    for row in rows:  # duplicate keys fail on both sides, NOT NULL keys too
        pair.same("INSERT INTO t VALUES (?, ?, ?, ?)", row)
    for _ in range(6):
        where = " AND ".join(data.draw(st.lists(conditions(types), min_size=1, max_size=3)))
        pair.same(f"SELECT * FROM t WHERE {where}")
        pair.same(
            f"SELECT k1, v1 FROM t WHERE {where} ORDER BY k1, k2 LIMIT 3 OFFSET 1", ordered=True
        )
        pair.same(
            f"SELECT v1, COUNT(*), SUM(k1), MIN(v2), MAX(k2), AVG(k1) FROM t WHERE {where} "
            "GROUP BY v1 HAVING COUNT(*) > 0"
        )


@SETTINGS
@given(data=st.data(), schema=schemas())
def test_updates_deletes_and_joins_answer_as_sqlite(
    data: st.DataObject, schema: tuple[dict[str, str], list[str], str | None]
) -> None:
    types, key, index = schema
    pair = Pair()
    _create(pair, types, key, index)
    pair.same("CREATE TABLE u(k1 INTEGER PRIMARY KEY, w TEXT)")
    rows = data.draw(st.lists(st.tuples(*(_value(types, c) for c in COLUMNS)), max_size=20))
    for row in rows:
        pair.same("INSERT INTO t VALUES (?, ?, ?, ?)", row)
    for k in data.draw(st.lists(st.integers(-5, 5), unique=True, max_size=6)):
        pair.same("INSERT INTO u VALUES (?, ?)", (k, f"w{k}"))
    column = data.draw(st.sampled_from(["v1", "v2"]))
    value = data.draw(_value(types, column))
    where = data.draw(conditions(types))
    pair.same(f"UPDATE t SET {column} = ? WHERE {where}", (value,))
    pair.same("SELECT * FROM t")
    if index is not None:
        pair.same(f"SELECT * FROM t WHERE {index} IS NOT NULL AND {index} >= {_sql(value)}")
    pair.same(f"DELETE FROM t WHERE {data.draw(conditions(types))}")
    pair.same("SELECT * FROM t")
    pair.same("SELECT t.k1, t.v1, u.w FROM t JOIN u ON u.k1 = t.k1")
    pair.same("SELECT t.k1, u.w FROM t LEFT JOIN u ON u.k1 = t.k1 WHERE u.w IS NULL")
    pair.same("SELECT u.k1, COUNT(t.k1) FROM u LEFT JOIN t ON t.k1 = u.k1 GROUP BY u.k1")
    pair.same("SELECT a.k1, b.k1 FROM t a JOIN t b ON a.v1 = b.v1")
