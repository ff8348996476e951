"""float8 values go out in PostgreSQL's text format: float8out's shortest round-trip digits,
exponent form below 1e-4 and from 1e15 on (`1`, `-0`, `1e+15`; CascaDB sent Python's repr,
`1.0`, `-0.0`, `1000000000000000.0`). The bytes on the wire are compared, as psql shows
them: psycopg would read `1` and `1.0` alike. Marked `services`, the same SELECTs go to the
real PostgreSQL.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.cascadb.casts import float8_out
from tests.cascadb.pg_client import Running

# (what the SELECT casts, the text PostgreSQL 15 sends for it)
FLOATS = [
    ("1", "1"),
    ("-0", "-0"),
    ("0", "0"),
    ("1e15", "1e+15"),
    ("1e14", "100000000000000"),
    ("123456789012345", "123456789012345"),
    ("1234567890123456", "1.234567890123456e+15"),
    ("123456789012345678", "1.2345678901234568e+17"),
    ("9007199254740993", "9.007199254740992e+15"),  # 2**53 + 1: no double holds it
    # a midpoint between two doubles is never sent, though shortest (Python's repr is)
    ("1e23", "9.999999999999999e+22"),
    ("5.330445740535638e16", "5.3304457405356384e+16"),
    ("1.5e-5", "1.5e-05"),
    ("0.0001", "0.0001"),
    ("0.00012345", "0.00012345"),
    ("0.1", "0.1"),
    ("-2.5", "-2.5"),
    ("100", "100"),
    ("1e100", "1e+100"),
    ("1.7976931348623157e308", "1.7976931348623157e+308"),
    ("4.9e-324", "5e-324"),
    ("2.2250738585072014e-308", "2.2250738585072014e-308"),
    ("0.30000000000000004", "0.30000000000000004"),
    ("Infinity", "Infinity"),
    ("-inf", "-Infinity"),
    ("NaN", "NaN"),
]


def sent(conn: psycopg.Connection[Any], sql: str) -> list[bytes | None]:
    """The first row's values as the server sent them (text format)."""
    result = conn.pgconn.exec_(sql.encode())
    assert result.error_message == b"", result.error_message
    return [result.get_value(0, i) for i in range(result.nfields)]


def test_float8_is_sent_as_postgresqls_text(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        casts = ", ".join(f"'{written}'::float8" for written, _ in FLOATS)
        assert sent(conn, f"SELECT {casts}") == [text.encode() for _, text in FLOATS]
        # computed floats, a table's and a parameter's the same
        assert sent(conn, "SELECT 1e15::float8 * 10, 2.0::float8 / 4") == [b"1e+16", b"0.5"]
        conn.execute("CREATE TABLE f(k INTEGER PRIMARY KEY, v DOUBLE PRECISION)")
        conn.execute("INSERT INTO f VALUES (1, 3.0), (2, -0.0::float8), (3, 1e20)")
        rows = conn.execute("SELECT v FROM f ORDER BY k", binary=False).pgresult
        assert rows is not None
        assert [rows.get_value(i, 0) for i in range(3)] == [b"3", b"-0", b"1e+20"]
        bound = conn.pgconn.exec_params(b"SELECT $1::float8", [struct.pack("!d", 1e15)], [701], [1])
        assert bound.get_value(0, 0) == b"1e+15"
        # a cast to text writes a float as float8out does (CascaDB's was SQLite's 1.0)
        casts = "1.0::float8::text, CAST(-0.0::float8 AS VARCHAR(2)), CAST(1e15::float8 AS TEXT)"
        assert sent(conn, f"SELECT {casts}") == [b"1", b"-0", b"1e+15"]


@given(st.floats(allow_nan=False))
def test_float8_text_reads_back_as_the_same_double(number: float) -> None:
    back = float(float8_out(number))
    assert back == number
    assert math.copysign(1, back) == math.copysign(1, number)  # -0 too


@pytest.mark.services
def test_random_doubles_are_sent_as_postgresql_sends_them(
    running: Running, postgres_dsn: str
) -> None:
    with (
        psycopg.connect(running.dsn(), autocommit=True) as ours,
        psycopg.connect(postgres_dsn, autocommit=True) as theirs,
    ):

        @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(st.floats(), min_size=1, max_size=50))
        def same(numbers: list[float]) -> None:
            # repr reads back as the same double in both servers' float8in
            sql = "SELECT " + ", ".join(f"'{number!r}'::float8" for number in numbers)
            expected = sent(theirs, sql)
            assert sent(ours, sql) == expected
            assert [float8_out(n).encode() for n in numbers] == expected

        same()
