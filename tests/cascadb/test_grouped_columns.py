"""The columns of a grouped query and the type of WHERE and HAVING, as each dialect has them.

PostgreSQL's dialect refuses a column read outside GROUP BY and aggregates (42803) unless its
table's primary key is grouped, reads `GROUP BY +1` as a constant, groups a query with HAVING
into one group, and refuses a WHERE or HAVING that is plainly no Boolean (42804). Its scripts
run through psycopg against CascaDB and, marked `services`, the real PostgreSQL: both must
give the same SQLSTATE and message, or the same rows. SQLite's dialect keeps sqlite3's bare
columns, compared with sqlite3 itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.cascadb import Database, Error, MemoryKv
from meterseal.storage.scratch import scratch_schema
from tests.cascadb.pg_client import Running, libpq

SETUP = [
    "CREATE TABLE t(k INTEGER PRIMARY KEY, a INTEGER, b INTEGER)",
    "INSERT INTO t VALUES (1, 1, 1), (2, 2, 1), (3, 3, 2)",
    "CREATE TABLE u(a INTEGER, b INTEGER)",  # no primary key: nothing depends on a column
    "INSERT INTO u VALUES (1, 1), (5, 2)",
    "CREATE TABLE w(k INTEGER PRIMARY KEY, c TEXT, v VARCHAR(3), f NUMERIC(5, 2), "
    "g DOUBLE PRECISION, h BIGINT)",
]


def answers(dsn: str, steps: Sequence[str]) -> list[tuple[str, ...]]:
    """Each statement's command tag and rows as text, or its SQLSTATE and message."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [answer(conn, sql) for sql in steps]


def answer(conn: psycopg.Connection[Any], sql: str, ordered: bool = True) -> tuple[str, ...]:
    """The command tag and rows as text (sorted unless `ordered`), or SQLSTATE and message."""
    try:
        cursor = conn.execute(sql)
    except psycopg.Error as exc:
        return (exc.sqlstate or "?", exc.diag.message_primary or "")
    rows = cursor.fetchall() if cursor.description else []
    shown = [",".join(str(v) for v in row) for row in rows]
    return (cursor.statusmessage or "", *(shown if ordered else sorted(shown)))


def ungrouped(column: str) -> tuple[str, str]:
    """PostgreSQL's answer to `column` read outside GROUP BY and aggregates."""
    message = "must appear in the GROUP BY clause or be used in an aggregate function"
    return ("42803", f'column "{column}" {message}')


def test_ungrouped_columns_are_refused_as_postgresql_refuses_them(dsn: str) -> None:
    steps = [
        *SETUP,
        "SELECT a, count(*) FROM t GROUP BY b",  # all four were answered from a group's row
        "SELECT a, count(*) FROM t x GROUP BY b",  # named by its alias
        "SELECT a, count(*) FROM t",  # aggregated without GROUP BY
        "SELECT b, count(*) FROM t GROUP BY b ORDER BY a",
        "SELECT b FROM t GROUP BY b HAVING a > 1",
        "SELECT a FROM t HAVING a > 1",  # HAVING alone groups the query
        "SELECT a, count(*) FROM t GROUP BY a + 1",  # a grouped expression is not its column
        "SELECT u.a, count(*) FROM u GROUP BY b",
        "SELECT t.a, u.a FROM t JOIN u ON t.b = u.b GROUP BY t.k",  # t's key, not u's
        "SELECT b, count(*) FROM t GROUP BY b HAVING k > 0",
    ]
    assert answers(dsn, steps)[len(SETUP) :] == [
        ungrouped("t.a"),
        ungrouped("x.a"),
        ungrouped("t.a"),
        ungrouped("t.a"),
        ungrouped("t.a"),
        ungrouped("t.a"),
        ungrouped("t.a"),
        ungrouped("u.a"),
        ungrouped("u.a"),
        ungrouped("t.k"),
    ]


def test_grouped_columns_and_expressions_of_them_are_read(dsn: str) -> None:
    steps = [
        *SETUP,
        "SELECT a + 1, count(*) FROM t GROUP BY a ORDER BY 1",
        "SELECT (a + 1) * 2, count(*) FROM t GROUP BY (a + 1) ORDER BY 1",
        "SELECT t.b, count(*), sum(a) FROM t GROUP BY b ORDER BY b",
        "SELECT b, count(a) FROM t GROUP BY b HAVING sum(a) > 0 ORDER BY max(a) DESC",
        "SELECT a, b FROM t GROUP BY k ORDER BY k",  # the primary key grouped
        "SELECT x.a, count(u.b) FROM t x LEFT JOIN u ON u.a = x.a GROUP BY x.k ORDER BY x.a",
        "SELECT 1 FROM t HAVING 1 > 0",  # one group: was a row per row of t
        "SELECT count(*) FROM t HAVING count(*) > 5",
        "SELECT count(*) FROM t GROUP BY +1",  # a constant, not position 1: was 42803
        "SELECT k FROM t ORDER BY +1 DESC, k",  # was sorted by k descending
        "SELECT b, (SELECT count(*) FROM u WHERE u.b = t.b) FROM t GROUP BY b ORDER BY b",
    ]
    assert answers(dsn, steps)[len(SETUP) :] == [
        ("SELECT 3", "2,1", "3,1", "4,1"),
        ("SELECT 3", "4,1", "6,1", "8,1"),
        ("SELECT 2", "1,2,3", "2,1,3"),
        ("SELECT 2", "2,1", "1,2"),
        ("SELECT 3", "1,1", "2,1", "3,2"),
        ("SELECT 3", "1,1", "2,0", "3,0"),
        ("SELECT 1", "1"),
        ("SELECT 0",),
        ("SELECT 1", "3"),
        ("SELECT 3", "1", "2", "3"),
        ("SELECT 2", "1,1", "2,1"),
    ]


def test_where_and_having_take_a_boolean_as_postgresql(dsn: str) -> None:
    steps = [
        *SETUP,
        "SELECT b FROM t GROUP BY b HAVING 1",  # both were read as sqlite3 reads them
        "SELECT b FROM t GROUP BY b HAVING (b)",
        "SELECT k FROM t WHERE 1",
        "SELECT k FROM t WHERE 1.5",
        "SELECT k FROM t WHERE -2147483648",
        "SELECT k FROM t WHERE 2147483648",
        "SELECT k FROM t WHERE " + "9" * 30,
        "SELECT k FROM w WHERE c",
        "SELECT k FROM w WHERE v",
        "SELECT k FROM w WHERE f",
        "SELECT k FROM w WHERE g",
        "SELECT k FROM w WHERE h",
        "SELECT k FROM t WHERE TRUE AND k > 2",
        "SELECT k FROM t WHERE NULL",
        "SELECT b FROM t GROUP BY b HAVING count(*) > 1",
    ]

    def mismatch(clause: str, kind: str) -> tuple[str, str]:
        return ("42804", f"argument of {clause} must be type boolean, not type {kind}")

    assert answers(dsn, steps)[len(SETUP) :] == [
        mismatch("HAVING", "integer"),
        mismatch("HAVING", "integer"),
        mismatch("WHERE", "integer"),
        mismatch("WHERE", "numeric"),
        mismatch("WHERE", "integer"),
        mismatch("WHERE", "bigint"),
        mismatch("WHERE", "numeric"),
        mismatch("WHERE", "text"),
        mismatch("WHERE", "character varying"),
        mismatch("WHERE", "numeric"),
        mismatch("WHERE", "double precision"),
        mismatch("WHERE", "bigint"),
        ("SELECT 1", "3"),
        ("SELECT 0",),
        ("SELECT 1", "1"),
    ]


def test_the_sqlite_dialect_keeps_sqlite3s_bare_columns() -> None:
    setup = SETUP[:2]
    queries = [
        "SELECT a * 0, count(*) FROM t GROUP BY b ORDER BY 2",  # a bare column
        "SELECT a, count(*) FROM t WHERE k = 2",
        "SELECT b, count(*) FROM t GROUP BY b HAVING a >= 0 ORDER BY b",
        "SELECT b FROM t GROUP BY b HAVING 1 ORDER BY b",
        "SELECT k FROM t WHERE 1 ORDER BY k",
        "SELECT b, count(*) FROM t GROUP BY +1 ORDER BY 1",  # a position to sqlite3
        "SELECT a FROM t HAVING a > 1",  # refused: was every row with a > 1 or not
        "SELECT 1 FROM t HAVING 1 > 0",
    ]
    theirs = sqlite3.connect(":memory:")
    ours = Database(MemoryKv())
    for sql in setup:
        theirs.execute(sql)
        ours.execute(sql)
    for sql in queries:
        try:
            expected: object = theirs.execute(sql).fetchall()
        except sqlite3.Error as exc:
            expected = str(exc)
        try:
            got: object = [tuple(r) for r in ours.execute(sql).rows]
        except Error as exc:
            got = str(exc)
        assert got == expected, sql


GROUPED = st.sampled_from(["a", "b", "k", "x.k", "a + 1", "(a + 1)", "+1", "b * 2"])
READ = st.sampled_from(["a", "b", "k", "x.a", "a + 1", "(a + 1) * 2", "b * 2", "a + b", "1"])
AGGREGATED = st.sampled_from(["count(*)", "sum(a)", "max(b)", "count(a + b)"])
CONDITION = st.sampled_from(["count(*) > 1", "a > 1", "sum(b) > 1", "b > 0", "1", "k"])


@st.composite
def grouped_queries(draw: st.DrawFn) -> str:
    """A query of t (as x) with columns, aggregates, GROUP BY, HAVING and ORDER BY drawn."""
    items = draw(st.lists(st.one_of(READ, AGGREGATED), min_size=1, max_size=3))
    sql = f"SELECT {', '.join(items)} FROM t x"
    terms = draw(st.lists(GROUPED, max_size=2))
    sql += f" GROUP BY {', '.join(terms)}" if terms else ""
    having = draw(st.none() | CONDITION)
    sql += f" HAVING {having}" if having else ""
    order = draw(st.none() | READ | AGGREGATED)
    return sql + (f" ORDER BY {order}" if order else "")


@pytest.mark.services
def test_drawn_grouped_queries_answer_as_postgresqls(postgres_url: str, unique_name: str) -> None:
    server = Running()
    try:
        with (
            scratch_schema(postgres_url, unique_name) as scoped,
            psycopg.connect(server.dsn(), autocommit=True) as ours,
            psycopg.connect(libpq(scoped), autocommit=True) as theirs,
        ):
            for sql in SETUP[:2]:
                ours.execute(sql)
                theirs.execute(sql)

            @settings(max_examples=200, deadline=None)
            @given(query=grouped_queries())
            def same(query: str) -> None:
                assert answer(ours, query, False) == answer(theirs, query, False), query

            same()
    finally:
        server.stop()
