"""Casts and typed literals: a type CascaDB lacks is refused (0A000) where PostgreSQL answers a
value, never read as a number (`DATE '2020-01-01'` was 2020); casts to PostgreSQL's integer
types convert and overflow as PostgreSQL's; SQLite's dialect casts as sqlite3 does.

The scripts run through psycopg against CascaDB and, marked `services`, the real PostgreSQL
(test_pg_compat.py's transcripts).
"""

from __future__ import annotations

import sqlite3

import pytest

from meterseal.cascadb import Database, MemoryKv
from meterseal.cascadb.errors import NotSupportedError
from tests.cascadb.test_pg_compat import IDLE, Step, transcript


def on_postgresql(request: pytest.FixtureRequest) -> bool:
    """Whether the test's `dsn` is the real PostgreSQL's."""
    return bool(request.node.callspec.params["dsn"] == "postgresql")


def test_a_cast_to_a_type_cascadb_lacks_is_refused(
    dsn: str, request: pytest.FixtureRequest
) -> None:
    steps: list[Step] = [
        "CREATE TABLE c(k INTEGER PRIMARY KEY, v TEXT)",
        "SELECT v::date FROM c",  # refused when planned: no row is read
        "INSERT INTO c VALUES (1, '2020-01-01')",
        "SELECT DATE '2020-01-01'",  # was 2020
        "SELECT '10:00'::time",  # was 10
        "SELECT '{}'::json",  # was 0
        "SELECT CAST(v AS DATE) FROM c",  # was 2020
        ("SELECT %s::date", ("2020-01-01",)),  # the extended protocol, a parameter
        "SELECT 'a'::char(3)",  # bpchar pads to 3: was 'a'
        "SELECT 'true'::boolean",  # was 0
        "SELECT '1 day'::interval",  # was 1
        "SELECT 16777217::real",  # float4: was 16777217.0
        "SELECT CAST(16777217 AS FLOAT(24))",
        "SELECT 'abcdef'::varchar(3), CAST(v AS pg_catalog.varchar(4)) FROM c",  # cut to n
    ]
    refused = ("0A000", IDLE)
    ours = [
        ("CREATE TABLE", IDLE),
        refused,
        ("INSERT 0 1", IDLE),
        *[refused] * 10,
        ("SELECT 1", IDLE, "abc,2020"),
    ]
    theirs = [
        ("CREATE TABLE", IDLE),
        ("SELECT 0", IDLE),
        ("INSERT 0 1", IDLE),
        ("SELECT 1", IDLE, "2020-01-01"),
        ("SELECT 1", IDLE, "10:00:00"),
        ("SELECT 1", IDLE, "{}"),
        ("SELECT 1", IDLE, "2020-01-01"),
        ("SELECT 1", IDLE, "2020-01-01"),
        ("SELECT 1", IDLE, "a  "),
        ("SELECT 1", IDLE, "True"),
        ("SELECT 1", IDLE, "1 day, 0:00:00"),
        ("SELECT 1", IDLE, "16777216.0"),
        ("SELECT 1", IDLE, "16777216.0"),
        ("SELECT 1", IDLE, "abc,2020"),
    ]
    assert transcript(dsn, steps) == (theirs if on_postgresql(request) else ours)


def test_integer_casts_convert_and_overflow_as_postgresqls(dsn: str) -> None:
    steps: list[Step] = [
        "SELECT CAST(1e308 AS INTEGER)",  # was a 309-digit integer
        "SELECT CAST(2147483647 AS INTEGER), CAST(-2147483648 AS INT4)",
        "SELECT CAST(2147483648 AS INTEGER)",
        "SELECT CAST(32767 AS SMALLINT), CAST(-32768 AS INT2)",
        "SELECT CAST(32768 AS SMALLINT)",
        "SELECT CAST(9223372036854775807 AS BIGINT)",
        "SELECT CAST(9223372036854775808 AS BIGINT)",
        "SELECT CAST(' 42 ' AS INTEGER), CAST('-7' AS INT8)",
        "SELECT CAST('2147483648' AS INTEGER)",
        "SELECT CAST('" + "9" * 5000 + "' AS BIGINT)",  # more digits than Python reads
        "SELECT CAST('abc' AS INTEGER)",  # was 0
        "SELECT CAST('1.5' AS INTEGER)",  # was 1
        "SELECT CAST('1e3' AS INTEGER)",  # was 1000
        # numeric rounds half away from zero, float8 half to even; SQLite truncates
        "SELECT CAST(2.5 AS INTEGER), CAST(-2.5 AS INTEGER), "
        "CAST(1.5::float8 AS INTEGER), CAST(2.5::float8 AS INTEGER)",
        "CREATE TABLE n(k INTEGER PRIMARY KEY, f DOUBLE PRECISION, big BIGINT)",
        "INSERT INTO n VALUES (1, 3000000000.0, 3000000000)",
        "SELECT CAST(big AS INTEGER) FROM n",
        "SELECT CAST(f AS INTEGER) FROM n",
        "SELECT CAST(big AS BIGINT), CAST(f AS BIGINT) FROM n",
        ("SELECT %s::integer", (3000000000,)),  # the extended protocol
        ("SELECT %s::smallint", ("40000",)),
        ("SELECT %s::smallint", ("-40",)),
    ]
    assert transcript(dsn, steps) == [
        ("22003", IDLE),
        ("SELECT 1", IDLE, "2147483647,-2147483648"),
        ("22003", IDLE),
        ("SELECT 1", IDLE, "32767,-32768"),
        ("22003", IDLE),
        ("SELECT 1", IDLE, "9223372036854775807"),
        ("22003", IDLE),
        ("SELECT 1", IDLE, "42,-7"),
        ("22003", IDLE),
        ("22003", IDLE),
        ("22P02", IDLE),
        ("22P02", IDLE),
        ("22P02", IDLE),
        ("SELECT 1", IDLE, "3,-3,2,2"),
        ("CREATE TABLE", IDLE),
        ("INSERT 0 1", IDLE),
        ("22003", IDLE),
        ("22003", IDLE),
        ("SELECT 1", IDLE, "3000000000,3000000000"),
        ("22003", IDLE),
        ("22003", IDLE),
        ("SELECT 1", IDLE, "-40"),
    ]


SQLITE_CASTS = [
    "CAST(1e308 AS INTEGER)",  # SQLite's largest integer: CascaDB's was 309 digits
    "CAST(-1e308 AS INTEGER)",
    "CAST(9e999 AS INTEGER)",
    "CAST('99999999999999999999' AS INTEGER)",
    "CAST('-99999999999999999999' AS BIGINT)",
    "CAST('1e3' AS INTEGER)",  # the integer prefix: 1, CascaDB's was 1000
    "CAST('  12abc' AS INTEGER)",
    "CAST('abc' AS INTEGER)",
    "CAST(2.5 AS INTEGER)",
    "CAST(-2.5 AS SMALLINT)",
    "CAST(3000000000 AS INT)",  # SQLite's INTEGER is 64 bits, whatever its name
    "CAST(7 AS SIGNED)",
    "CAST('abcdef' AS VARCHAR(3))",
    "CAST(16777217 AS REAL)",
]


def test_the_sqlite_dialect_casts_as_sqlite3() -> None:
    database = Database(MemoryKv())  # the PEP 249 driver's and the HTTP API's dialect
    sql = "SELECT " + ", ".join(SQLITE_CASTS)
    expected = sqlite3.connect(":memory:").execute(sql).fetchall()
    assert database.execute(sql).rows == expected


@pytest.mark.parametrize(
    "sql", ["DATE '2020-01-01'", "CAST('10:00' AS TIME)", "CAST('1' AS BOOLEAN)", "CAST(v AS JSON)"]
)
def test_the_sqlite_dialect_refuses_a_type_cascadb_lacks(sql: str) -> None:
    # sqlite3 reads these as NUMERIC (2020, 10, 1): a value, never an error
    database = Database(MemoryKv())
    database.execute("CREATE TABLE c(k INTEGER PRIMARY KEY, v TEXT)")
    with pytest.raises(NotSupportedError, match="does not implement the type"):
        database.execute(f"SELECT {sql} FROM c")
