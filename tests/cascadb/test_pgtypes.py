"""Parameters bound as text over the extended protocol are read as PostgreSQL's input
functions read them: numeric, double precision and the integer types refuse what Python's
Decimal, float and int take (`1_000`, `sNaN`, digits of other scripts: 22P02), and an
integer outside its type is 22003. The same Binds go to CascaDB and, marked `services`, to
the real PostgreSQL; Hypothesis's texts give both the same answer.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.pq import DiagnosticField

from tests.cascadb.pg_client import Outcome, Running, outcome

NUMERIC, INT8, INT4, INT2, FLOAT8 = 1700, 20, 23, 21, 701


def bad(name: str, text: str) -> tuple[str, str]:
    """PostgreSQL's 22P02 for `text` as a value of the type `name`."""
    return ("22P02", f'invalid input syntax for type {name}: "{text}"')


# (the parameter's type, its text, the value PostgreSQL 15 sends back or its error)
CASES: list[tuple[int, str, Outcome]] = [
    (NUMERIC, "1_000", bad("numeric", "1_000")),  # was 1000
    (NUMERIC, "sNaN", bad("numeric", "sNaN")),  # was NaN
    (NUMERIC, "+nan", bad("numeric", "+nan")),
    (NUMERIC, "\u0661\u0662", bad("numeric", "\u0661\u0662")),  # Arabic-Indic 12: was 12
    (NUMERIC, "0x10", bad("numeric", "0x10")),
    (NUMERIC, "1e", bad("numeric", "1e")),
    (NUMERIC, "", bad("numeric", "")),
    (NUMERIC, " 12.50 ", b"12.50"),
    (NUMERIC, "NaN", b"NaN"),
    (NUMERIC, "-0", b"0"),  # numeric has no -0: was -0
    (NUMERIC, "-inf", b"-Infinity"),
    (NUMERIC, "1.5e-3", b"0.0015"),
    (INT8, "1_000", bad("bigint", "1_000")),
    (INT8, "\u0664\u0662", bad("bigint", "\u0664\u0662")),
    (INT8, "1.0", bad("bigint", "1.0")),
    (INT8, " 42 ", b"42"),
    (INT8, "+7", b"7"),
    (
        INT8,
        "9223372036854775808",
        ("22003", 'value "9223372036854775808" is out of range for type bigint'),
    ),
    (INT4, "3000000000", ("22003", 'value "3000000000" is out of range for type integer')),
    (INT4, "-2147483648", b"-2147483648"),
    (INT2, "40000", ("22003", 'value "40000" is out of range for type smallint')),
    (FLOAT8, "1_000", bad("double precision", "1_000")),
    (FLOAT8, "\u0661\u0662", bad("double precision", "\u0661\u0662")),
    (FLOAT8, "1e400", ("22003", '"1e400" is out of range for type double precision')),
    (FLOAT8, "0x1p3", b"8"),  # strtod's hexadecimal
    (FLOAT8, " infinity ", b"Infinity"),
    (FLOAT8, "-0", b"-0"),
    # out of range before what follows is looked at, as PostgreSQL's readers stop
    (INT2, "65605 .x", ("22003", 'value "65605 .x" is out of range for type smallint')),
    (FLOAT8, "3E731y", ("22003", '"3E731" is out of range for type double precision')),
    (NUMERIC, "9E5093800917x", ("22003", "value overflows numeric format")),
]


def bound(conn: psycopg.Connection[Any], oid: int, text: str) -> Outcome:
    """What `SELECT $1` sends back for `text` bound as a parameter of type `oid`."""
    return outcome(conn.pgconn.exec_params(b"SELECT $1", [text.encode()], [oid], [0]))


def test_text_parameters_are_read_as_postgresqls(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        got = [bound(conn, oid, text) for oid, text, _ in CASES]
    assert got == [expected for _, _, expected in CASES]


def test_casts_of_text_read_it_as_parameters_are_read(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for oid, text, expected in CASES:
            name = {NUMERIC: "numeric", INT8: "int8", INT4: "int4", INT2: "int2"}
            sql = f"SELECT '{text}'::{name.get(oid, 'float8')}"
            result = conn.pgconn.exec_(sql.encode())
            state = result.error_field(DiagnosticField.SQLSTATE)
            assert (state.decode() if state else result.get_value(0, 0)) == (
                expected[0] if isinstance(expected, tuple) else expected
            ), sql


@pytest.mark.services
def test_random_number_texts_are_read_as_postgresql_reads_them(
    running: Running, postgres_dsn: str
) -> None:
    texts = st.text(alphabet="0123456789+-._eExX naNIinfty\u0663", max_size=10)
    with (
        psycopg.connect(running.dsn(), autocommit=True) as ours,
        psycopg.connect(postgres_dsn, autocommit=True) as theirs,
    ):

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.sampled_from([NUMERIC, INT8, INT4, INT2, FLOAT8]), texts)
        def same(oid: int, text: str) -> None:
            assert bound(ours, oid, text) == bound(theirs, oid, text)

        same()


def test_text_not_utf8_is_shown_as_postgresql_shows_it(dsn: str) -> None:
    # as many bytes as the bad sequence's first one announces (Python's error named one)
    def error(result: psycopg.pq.abc.PGresult) -> tuple[bytes | None, bytes | None]:
        fields = (DiagnosticField.SQLSTATE, DiagnosticField.MESSAGE_PRIMARY)
        return result.error_field(fields[0]), result.error_field(fields[1])

    bad = b'invalid byte sequence for encoding "UTF8": '
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = conn.pgconn.exec_(b"SELECT '\xf0\x9f\x98'")  # the quote after it counts
        assert error(query) == (b"22021", bad + b"0xf0 0x9f 0x98 0x27")
        for raw, shown in [(b"a\xc3(", b"0xc3 0x28"), (b"\xed\xa0\x80", b"0xed 0xa0 0x80")]:
            bound = conn.pgconn.exec_params(b"SELECT $1", [raw], [25], [0])
            assert error(bound) == (b"22021", bad + shown)
