"""Boolean results over the PostgreSQL protocol are PostgreSQL's: a comparison, AND, OR, NOT,
IS [NOT] NULL/TRUE/FALSE/DISTINCT FROM, IN, BETWEEN, LIKE, EXISTS and `true`/`false` describe
a bool column (OID 16) whose values are `t` and `f`, so psycopg reads True and False (CascaDB
described int8 and sent 1 and 0, which psycopg read as 1 and 0). Marked `services`, the same
statements go to the real PostgreSQL (fixed ones, and Hypothesis's random expressions)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.cascadb import Database, MemoryKv
from tests.cascadb.pg_client import Running

BOOL = 16
TABLE = "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)"
ROWS = "INSERT INTO t VALUES (1, 'one'), (2, NULL), (3, 'three')"

# (an expression over t, PostgreSQL 15's text of it for k = 1, 2, 3; None: NULL)
BOOLEANS: list[tuple[str, list[str | None]]] = [
    ("k = 1", ["t", "f", "f"]),
    ("k > 2", ["f", "f", "t"]),
    ("k <> 2", ["t", "f", "t"]),
    ("k != 2", ["t", "f", "t"]),
    ("k <= 2 AND v IS NOT NULL", ["t", "f", "f"]),
    ("k > 2 OR v = 'one'", ["t", None, "t"]),
    ("NOT k = 1", ["f", "t", "t"]),
    ("v IS NULL", ["f", "t", "f"]),
    ("v IS NOT NULL", ["t", "f", "t"]),
    ("v = 'one'", ["t", None, "f"]),
    ("k IN (1, 3)", ["t", "f", "t"]),
    ("k NOT IN (1, 3)", ["f", "t", "f"]),
    ("k BETWEEN 2 AND 3", ["f", "t", "t"]),
    ("k NOT BETWEEN 2 AND 3", ["t", "f", "f"]),
    ("v LIKE 't%'", ["f", None, "t"]),
    ("v NOT LIKE '%e'", ["f", None, "f"]),
    ("v LIKE 'o!%' ESCAPE '!'", ["f", None, "f"]),
    ("k IS DISTINCT FROM 2", ["t", "f", "t"]),
    ("v IS NOT DISTINCT FROM 'one'", ["t", "f", "f"]),
    ("(v = 'one') IS TRUE", ["t", "f", "f"]),
    ("(v = 'one') IS NOT FALSE", ["t", "t", "f"]),
    ("EXISTS (SELECT 1 FROM t AS u WHERE u.k > t.k)", ["t", "t", "f"]),
    ("NOT EXISTS (SELECT 1 FROM t AS u WHERE u.k = t.k + 1)", ["f", "f", "t"]),
    ("k IN (SELECT k FROM t WHERE v IS NULL)", ["f", "t", "f"]),
    ("true", ["t", "t", "t"]),
    ("false", ["f", "f", "f"]),
    ("(k = 1) = (v IS NULL)", ["f", "f", "t"]),
    ("CASE WHEN k = 1 THEN true ELSE k > 2 END", ["t", "f", "t"]),
    ("coalesce(v = 'one', false)", ["t", "f", "f"]),
    ("(SELECT max(k) FROM t) = k", ["f", "f", "t"]),
    ("k = 1 AS first", ["t", "f", "f"]),
]


def _sent(conn: psycopg.Connection[Any], sql: str) -> tuple[list[int], list[list[bytes | None]]]:
    """The column types a simple Query's RowDescription gives and the rows' text, as sent."""
    result = conn.pgconn.exec_(sql.encode())
    assert result.error_message == b"", result.error_message
    types = [result.ftype(i) for i in range(result.nfields)]
    rows = [[result.get_value(r, i) for i in range(result.nfields)] for r in range(result.ntuples)]
    return types, rows


def test_boolean_results_are_sent_as_bool(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TABLE)
        conn.execute(ROWS)
        select = ", ".join(expression for expression, _ in BOOLEANS)
        types, rows = _sent(conn, f"SELECT {select} FROM t ORDER BY k")
        assert types == [BOOL] * len(BOOLEANS)
        by_column = [list(column) for column in zip(*rows, strict=True)]
        expected = [[None if v is None else v.encode() for v in values] for _, values in BOOLEANS]
        assert by_column == expected
        # psycopg reads them as Python's bools, a NULL as None; other columns keep their values
        read = conn.execute("SELECT k, v, k = 1, v LIKE 't%', true FROM t ORDER BY k").fetchall()
        assert read[0] == (1, "one", True, False, True)
        assert read[1:] == [(2, None, False, None, True), (3, "three", False, True, True)]
        assert all(type(value) is bool for row in read for value in row[2:] if value is not None)


def test_boolean_results_of_the_extended_protocol_and_returning(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TABLE)
        conn.execute(ROWS)
        # Parse, Bind, Describe (the portal), Execute: the Describe's RowDescription says bool
        cursor = conn.execute("SELECT k = %s, %s::int > k FROM t ORDER BY k", [1, 2])
        assert cursor.description is not None
        assert [c.type_code for c in cursor.description] == [BOOL, BOOL]
        assert cursor.fetchall() == [(True, True), (False, False), (False, False)]
        prepared = conn.execute("SELECT v IS NULL FROM t WHERE k = %s", [2], prepare=True)
        assert prepared.fetchall() == [(True,)]
        returned = conn.execute("UPDATE t SET v = 'uno' WHERE k = 1 RETURNING k, v LIKE 'u%'")
        assert returned.fetchall() == [(1, True)]
        both = conn.execute("SELECT k > 1 FROM t UNION ALL SELECT false ORDER BY 1").fetchall()
        assert both == [(False,), (False,), (True,), (True,)]


def test_sqlites_sql_keeps_its_truth_values() -> None:
    # the PEP 249 driver, the HTTP API and Database.execute read SQLite's SQL: 1 and 0, as sqlite3
    database = Database(MemoryKv())
    database.execute(TABLE)
    database.execute(ROWS)
    result = database.execute("SELECT k = 1, v IS NULL, k IN (2, 3) FROM t WHERE k = 1")
    assert result.rows == [(1, 0, 0)]
    assert result.types is None


# Random Boolean expressions, compared with PostgreSQL's: integers and typed NULLs, so that
# both servers read the same types (PostgreSQL's unknown NULL would be resolved otherwise)
_INTEGERS = st.sampled_from(["0", "1", "2", "-1", "NULL::int"])
_TEXTS = st.sampled_from(["'ab'", "'a'", "''", "'ba'", "NULL::text"])
_PATTERNS = st.sampled_from(["'a%'", "'_b'", "'%'", "'a'", "'%a'"])
_NOT = st.sampled_from(["", "NOT "])


def _leaves() -> st.SearchStrategy[str]:
    compare = st.sampled_from(["=", "<>", "!=", "<", "<=", ">", ">="])
    lists = st.lists(_INTEGERS, min_size=1, max_size=3).map(", ".join)
    return st.one_of(
        st.sampled_from(["true", "false"]),
        st.tuples(_INTEGERS, compare, _INTEGERS).map(" ".join),
        st.tuples(_INTEGERS, _NOT).map(lambda p: f"{p[0]} IS {p[1]}NULL"),
        st.tuples(_INTEGERS, _NOT, lists).map(lambda p: f"{p[0]} {p[1]}IN ({p[2]})"),
        st.tuples(_INTEGERS, _NOT, _INTEGERS, _INTEGERS).map(
            lambda p: f"{p[0]} {p[1]}BETWEEN {p[2]} AND {p[3]}"
        ),
        st.tuples(_INTEGERS, _NOT, _INTEGERS).map(
            lambda p: f"{p[0]} IS {p[1]}DISTINCT FROM {p[2]}"
        ),
        st.tuples(_TEXTS, _NOT, _PATTERNS).map(lambda p: f"{p[0]} {p[1]}LIKE {p[2]}"),
    )


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    truths = st.sampled_from(["TRUE", "FALSE"])
    return st.one_of(
        inner.map(lambda a: f"NOT ({a})"),
        st.tuples(inner, st.sampled_from(["AND", "OR", "=", "<>"]), inner).map(
            lambda p: f"({p[0]}) {p[1]} ({p[2]})"
        ),
        st.tuples(inner, _NOT, truths).map(lambda p: f"({p[0]}) IS {p[1]}{p[2]}"),
        inner.map(lambda a: f"{'EXISTS'} (SELECT 1 WHERE {a})"),
    )


_EXPRESSIONS = st.recursive(_leaves(), _extend, max_leaves=6)


@pytest.mark.services
def test_random_boolean_expressions_are_sent_as_postgresql_sends_them(
    running: Running, postgres_dsn: str
) -> None:
    with (
        psycopg.connect(running.dsn(), autocommit=True) as ours,
        psycopg.connect(postgres_dsn, autocommit=True) as theirs,
    ):

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(_EXPRESSIONS, min_size=1, max_size=4))
        def same(expressions: list[str]) -> None:
            sql = "SELECT " + ", ".join(expressions)
            expected = _sent(theirs, sql)
            assert expected[0] == [BOOL] * len(expressions)
            assert _sent(ours, sql) == expected

        same()
