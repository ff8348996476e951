"""Casts and typed literals: a type CascaDB lacks is refused (0A000) where PostgreSQL answers a
value, never read as a number (`DATE '2020-01-01'` was 2020); casts to PostgreSQL's integer
types, double precision and numeric convert and overflow as PostgreSQL's, and their NaN sorts
and compares as PostgreSQL's; SQLite's dialect casts as sqlite3 does.

The scripts run through psycopg against CascaDB and, marked `services`, the real PostgreSQL
(test_pg_compat.py's transcripts).
"""

from __future__ import annotations

import sqlite3

import psycopg
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


def test_float8_and_numeric_casts_read_text_as_postgresqls(dsn: str) -> None:
    steps: list[Step] = [
        "SELECT 'abc'::float8",  # was 0.0
        "SELECT 'abc'::numeric",  # was 'abc'
        "SELECT ''::numeric",  # was NULL
        "SELECT ''::float8",  # was 0.0
        "SELECT '1.5x'::float8",  # was 1.5 (the numeric prefix)
        "SELECT '1_000'::numeric",  # was 1000 (Python's Decimal)
        "SELECT '1e'::numeric",  # was '1e'
        "SELECT '+nan'::numeric",  # numeric's NaN has no sign
        "SELECT CAST('abc' AS DOUBLE PRECISION)",
        "SELECT CAST('abc' AS FLOAT)",
        "SELECT CAST('abc' AS DECIMAL)",
        "SELECT CAST('abc' AS DECIMAL(3, 1))",  # was 22000
        ("SELECT %s::float8", ("abc",)),  # the extended protocol, a parameter
        "SELECT ' 1.5 '::float8, ' 1.5 '::numeric, '+.5'::numeric, '5.'::float8, '1e 5'::numeric",
        "SELECT '-0.00'::numeric, '0x1p3'::float8, CAST('12' AS pg_catalog.numeric(4, 1))",
        "SELECT 'NaN'::float8, '-inf'::float8, 'Infinity'::float8, 'nan(1)'::float8",  # were 0.0
        "SELECT 'nan'::numeric, '-Infinity'::numeric, 'inf'::numeric",
        "SELECT '1e400'::float8",  # was inf
        "SELECT '1e-400'::float8",  # was 0.0
        "SELECT '4.9e-324'::float8",  # a subnormal: no underflow
        "SELECT 1e400::float8",  # a number written is numeric: was inf
        "SELECT '1e400'::numeric::float8",  # was inf
        "SELECT 'NaN'::numeric::float8, 'NaN'::float8::numeric, '-nan'::float8::numeric",
        # float8 to numeric keeps 15 significant digits; a number written is exact
        "SELECT (1 / 3.0)::float8::numeric, 0.1234567890123456789::numeric",
        "SELECT 'NaN'::numeric(3, 1)",  # was 22000
        "SELECT 'Infinity'::numeric(3, 1)",
    ]
    bad, overflow = ("22P02", IDLE), ("22003", IDLE)
    assert transcript(dsn, steps) == [
        *[bad] * 13,
        ("SELECT 1", IDLE, "1.5,1.5,0.5,5.0,100000"),
        ("SELECT 1", IDLE, "0.00,8.0,12.0"),
        ("SELECT 1", IDLE, "nan,-inf,inf,nan"),
        ("SELECT 1", IDLE, "NaN,-Infinity,Infinity"),
        overflow,
        overflow,
        ("SELECT 1", IDLE, "5e-324"),
        overflow,
        overflow,
        ("SELECT 1", IDLE, "nan,NaN,NaN"),
        ("SELECT 1", IDLE, "0.333333333333333,0.1234567890123456789"),
        ("SELECT 1", IDLE, "NaN"),
        overflow,
    ]


def test_casts_of_a_text_column_and_their_nan_as_postgresqls(dsn: str) -> None:
    rows = [(1, "abc"), (2, "\t1.5\n"), (3, "NaN"), (4, "-Infinity"), (5, " nan "), (6, "-1")]
    steps: list[Step] = [
        "CREATE TABLE c(k INTEGER PRIMARY KEY, v TEXT)",
        *[("INSERT INTO c VALUES (%s, %s)", row) for row in rows],
        "SELECT CAST(v AS DOUBLE PRECISION), CAST(v AS NUMERIC(3, 2)) FROM c WHERE k = 2",
        "SELECT CAST(v AS NUMERIC) FROM c",  # 'abc'
        "SELECT v::float8 FROM c WHERE k = 1",
        # NaN is equal to NaN and above every other number (it compared equal to all)
        "SELECT DISTINCT v::float8 FROM c WHERE k > 1 ORDER BY 1",
        "SELECT v::numeric, count(*) FROM c WHERE k > 1 GROUP BY v::numeric ORDER BY 1 DESC",
        "SELECT k FROM c WHERE k > 1 AND v::float8 > 0 ORDER BY k",
        "SELECT k FROM c WHERE k > 1 AND v::numeric = 'NaN'::numeric ORDER BY k",
        "SELECT max(v::float8), min(v::numeric) FROM c WHERE k > 1",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        *[("INSERT 0 1", IDLE)] * len(rows),
        ("SELECT 1", IDLE, "1.5,1.50"),
        ("22P02", IDLE),
        ("22P02", IDLE),
        ("SELECT 4", IDLE, "-inf", "-1.0", "1.5", "nan"),
        ("SELECT 4", IDLE, "NaN,2", "1.5,1", "-1,1", "-Infinity,1"),
        ("SELECT 3", IDLE, "2", "3", "5"),
        ("SELECT 2", IDLE, "3", "5"),
        ("SELECT 1", IDLE, "nan,-Infinity"),
    ]


def test_a_float8_nan_is_sent_as_postgresqls_text(dsn: str) -> None:
    # psycopg reads nan and NaN alike: the bytes on the wire, as psql shows them
    with psycopg.connect(dsn, autocommit=True) as conn:
        result = conn.pgconn.exec_(b"SELECT 'NaN'::float8, '-Infinity'::float8")
        assert [result.get_value(0, 0), result.get_value(0, 1)] == [b"NaN", b"-Infinity"]


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
    "CAST('abc' AS REAL)",  # SQLite's numeric prefix, else 0: PostgreSQL's dialect fails
    "CAST('1.5x' AS DOUBLE PRECISION)",
    "CAST('\uff11\uff12' AS REAL)",  # fullwidth digits are no number to SQLite: CascaDB's 12.0
    # SQLite's numeric prefix, else 0 (CascaDB's kept the text: 'abc', '12abc'); CascaDB's
    # NUMERIC values are Decimals, as a NUMERIC column's, equal to sqlite3's integers and reals
    *[
        f"CAST({text} AS {to})"
        for to in ("NUMERIC", "DECIMAL")
        for text in (
            "'abc'",
            "'12abc'",
            "'1.5e3x'",
            "''",
            "' 7 '",
            "'0x10'",
            "'1.0'",
            "'1.5'",
            "'9223372036854775808'",
            "'  -3.0abc'",
            "'inf'",
            "'\uff11\uff12'",
            "x'3132'",
        )
    ],
    "CAST('12abc' AS NUMERIC(10, 2))",  # read as SQLite reads it, then fitted: 12.00
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
