"""GROUP BY and ORDER BY positions: an integer constant is an output column's position, as in
sqlite3 and PostgreSQL (`GROUP BY 1` grouped every row by the constant 1), out of range an
error, at an aggregate an error (42803); an output alias names its expression in GROUP BY.

PostgreSQL's dialect runs through psycopg against CascaDB and, marked `services`, the real
PostgreSQL (test_pg_compat.py's transcripts); SQLite's is compared with sqlite3.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from meterseal.cascadb import Database, Error, MemoryKv
from tests.cascadb.test_pg_casts import on_postgresql
from tests.cascadb.test_pg_compat import IDLE, Step, transcript

SETUP = [
    "CREATE TABLE g(k INTEGER PRIMARY KEY, name TEXT)",
    "INSERT INTO g VALUES (1, 'a'), (2, 'b'), (3, 'a')",
]


def test_group_by_positions_as_postgresqls(dsn: str) -> None:
    steps: list[Step] = [
        *SETUP,
        "SELECT name, count(*) FROM g GROUP BY 1 ORDER BY 1",  # was a,3
        "SELECT name, k, count(*) FROM g GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT name, k % 2, count(*) FROM g GROUP BY name, 2 ORDER BY 1",  # mixed with a name
        "SELECT upper(name) AS u, count(*) FROM g GROUP BY 1 ORDER BY 2 DESC, 1",  # expression
        "SELECT name, count(*) FROM g GROUP BY (1) HAVING count(*) > 1",
        "SELECT * FROM g GROUP BY 1, 2 ORDER BY 2, 1",  # of the columns * stands for
        "SELECT name AS n, count(*) FROM g GROUP BY n ORDER BY n",  # an alias: was 42703
        "SELECT name AS k, count(*) FROM g GROUP BY k ORDER BY 1",  # FROM's column comes first
        "SELECT name, count(*) FROM g GROUP BY -(-1) ORDER BY 1",
        "SELECT name, count(*) FROM g GROUP BY 3",  # out of range
        "SELECT name, count(*) FROM g GROUP BY 1, 3",
        "SELECT name, count(*) FROM g GROUP BY 0",
        "SELECT name, count(*) FROM g GROUP BY -1",
        "SELECT name, count(*) FROM g GROUP BY 2",  # an aggregate
        "SELECT name, count(*) + 1 FROM g GROUP BY 2",
        "SELECT name, count(*) AS c FROM g GROUP BY c",
        "SELECT name, count(*) FROM g GROUP BY count(*)",  # was 42601
        "SELECT name, count(*) FROM g GROUP BY 'x'",  # non-integer constants
        "SELECT name, count(*) FROM g GROUP BY 1.5",
        "SELECT name, count(*) FROM g GROUP BY NULL",
        "SELECT name, count(*) FROM g GROUP BY 3000000000",  # past int4: not an integer
    ]
    out_of_range, aggregate, constant = ("42P10", IDLE), ("42803", IDLE), ("42601", IDLE)
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("INSERT 0 3", IDLE),
        ("SELECT 2", IDLE, "a,2", "b,1"),
        ("SELECT 3", IDLE, "a,1,1", "a,3,1", "b,2,1"),
        ("SELECT 2", IDLE, "a,1,2", "b,0,1"),
        ("SELECT 2", IDLE, "A,2", "B,1"),
        ("SELECT 1", IDLE, "a,2"),
        ("SELECT 3", IDLE, "1,a", "3,a", "2,b"),
        ("SELECT 2", IDLE, "a,2", "b,1"),
        ("SELECT 3", IDLE, "a,1", "a,1", "b,1"),
        ("SELECT 2", IDLE, "a,2", "b,1"),
        *[out_of_range] * 4,
        *[aggregate] * 4,
        *[constant] * 4,
    ]


def test_order_by_positions_as_postgresqls(dsn: str) -> None:
    steps: list[Step] = [
        *SETUP,
        "SELECT name, k FROM g ORDER BY 1 DESC, 2 DESC",
        "SELECT name FROM g ORDER BY 2",
        "SELECT name FROM g ORDER BY 0",
        "SELECT name FROM g ORDER BY -1",  # was sorted by the constant -1
        "SELECT name FROM g ORDER BY 'x'",
        "SELECT name FROM g ORDER BY 1.5",
        "SELECT name FROM g UNION SELECT 'c' ORDER BY 1 DESC",
        "SELECT name FROM g UNION SELECT 'c' ORDER BY 2",  # was XX000 (an IndexError)
        "SELECT name FROM g UNION SELECT 'c' ORDER BY 0",  # was sorted by the last column
        "SELECT name FROM g UNION SELECT 'c' ORDER BY '1'",  # was sorted by column 1
    ]
    out_of_range, constant = ("42P10", IDLE), ("42601", IDLE)
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("INSERT 0 3", IDLE),
        ("SELECT 3", IDLE, "b,2", "a,3", "a,1"),
        *[out_of_range] * 3,
        *[constant] * 2,
        ("SELECT 3", IDLE, "c", "b", "a"),
        *[out_of_range] * 2,
        constant,
    ]


def test_distinct_on_is_refused_rather_than_read_as_distinct(
    dsn: str, request: pytest.FixtureRequest
) -> None:
    steps: list[Step] = [*SETUP, "SELECT DISTINCT ON (1) name, k FROM g ORDER BY 1, 2"]
    answer = ("SELECT 2", IDLE, "a,1", "b,2")  # CascaDB's was DISTINCT's: 3 rows
    ours = ("0A000", IDLE)
    assert transcript(dsn, steps)[-1] == (answer if on_postgresql(request) else ours)


SQLITE_QUERIES = [
    "SELECT name, count(*) FROM g GROUP BY 1 ORDER BY 1",
    "SELECT name, k, count(*) FROM g GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT name, k % 2, count(*) FROM g GROUP BY name, 2 ORDER BY 1",
    "SELECT upper(name) AS u, count(*) FROM g GROUP BY 1 HAVING count(*) > 1",
    "SELECT * FROM g GROUP BY 2, 1 ORDER BY 1",
    "SELECT name AS n, count(*) FROM g GROUP BY n ORDER BY n",
    "SELECT name, count(*) FROM g GROUP BY +(1) ORDER BY 1",  # SQLite reads a plus as well
    "SELECT name, count(*) FROM g GROUP BY 3",
    "SELECT name, count(*) FROM g GROUP BY 1, 3",
    "SELECT name, count(*) FROM g GROUP BY 0",
    "SELECT name, count(*) FROM g GROUP BY -(1)",
    "SELECT name, count(*) FROM g GROUP BY 2",
    "SELECT name, count(*) AS c FROM g GROUP BY c",
    # other constants are expressions to SQLite: one group
    "SELECT name, count(*) FROM g GROUP BY 'x'",
    "SELECT name, count(*) FROM g GROUP BY 1.5",
    "SELECT name, count(*) FROM g GROUP BY 3000000000",
    "SELECT name FROM g ORDER BY -1",  # was sorted by the constant -1
    "SELECT name, k FROM g ORDER BY 1, 2 DESC",
    "SELECT name FROM g UNION SELECT 'c' ORDER BY 2",
]


def _answer(run: Any, sql: str) -> Any:
    try:
        return run(sql)
    except (sqlite3.Error, Error) as exc:
        return str(exc)


def test_the_sqlite_dialect_reads_positions_as_sqlite3() -> None:
    lite = sqlite3.connect(":memory:")
    database = Database(MemoryKv())  # the PEP 249 driver's and the HTTP API's dialect
    for statement in SETUP:
        lite.execute(statement)
        database.execute(statement)
    expected = [_answer(lambda s: lite.execute(s).fetchall(), sql) for sql in SQLITE_QUERIES]
    assert [_answer(lambda s: database.execute(s).rows, sql) for sql in SQLITE_QUERIES] == expected
