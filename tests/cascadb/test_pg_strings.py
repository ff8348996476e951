"""Escape strings (`E'…'`) read as PostgreSQL reads them: CascaDB refused them (0A000). The
text each SELECT sends, or its SQLSTATE and message, from CascaDB and, marked `services`,
from the real PostgreSQL; and Hypothesis's texts written with escapes read back whole.
"""

from __future__ import annotations

from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cascadb.pg_client import Outcome, outcome

INVALID_ESCAPE = ("22025", "invalid Unicode escape")
PAIR = "invalid Unicode surrogate pair at or near "
NUL = ("22021", 'invalid byte sequence for encoding "UTF8": 0x00')

# (the escape string as written, its text or (SQLSTATE, message) as PostgreSQL 15 answers)
CASES: list[tuple[str, bytes | tuple[str, str]]] = [
    (r"E'a\nb'", b"a\nb"),
    (r"e'\t\\\'x'''", b"\t\\'x'"),
    (r"E'\b\f\r\v'", b"\b\f\rv"),  # no \v in PostgreSQL 15: the v
    (r"E'\101\7\0101'", b"A\x07\x081"),  # octal: 1 to 3 digits
    (r"E'\x41\x4a\x4G\xg\x'", b"AJ\x04Gxgx"),  # hexadecimal: 1 or 2 digits
    (r"E'\u00e9\U0001F600\ud83d\ude00'", "é😀😀".encode()),
    (r"E'\U0000D83D\U0000DE00\q\8\%é\é'", "😀q8%éé".encode()),
    (r"E'\xc3\xa9'", "é".encode()),  # bytes that make UTF-8 together
    ("E'a' -- a comment\n'\\x41'\n\n  'b'", b"aAb"),  # continued past a newline
    ("E'\\1'\n'2'", b"\x012"),
    (r"E''", b""),
    (r"E'\400'", NUL),  # a byte of \400: 0
    (r"E'a\000b'", NUL),
    (r"E'\xff'", ("22021", 'invalid byte sequence for encoding "UTF8": 0xff')),
    (r"E'\xc3\x28'", ("22021", 'invalid byte sequence for encoding "UTF8": 0xc3 0x28')),
    (r"E'\355\240\200'", ("22021", 'invalid byte sequence for encoding "UTF8": 0xed 0xa0 0x80')),
    (r"E'\u12'", INVALID_ESCAPE),
    (r"E'\Uzz'", INVALID_ESCAPE),
    (r"E'\ud83d\u12'", INVALID_ESCAPE),
    (r"E'\u0000'", ("42601", r'invalid Unicode escape value at or near "\u0000"')),
    (r"E'\U00110000'", ("42601", r'invalid Unicode escape value at or near "\U00110000"')),
    (r"E'\ud83d'", ("42601", PAIR + '"\'"')),
    (r"E'\ude00'", ("42601", PAIR + r'"\ude00"')),
    (r"E'\ud83dx'", ("42601", PAIR + '"x"')),
    (r"E'\uD800\u0041'", ("42601", PAIR + r'"\u0041"')),
    (r"E'\ud83d\\'", ("42601", PAIR + '"\\"')),
]


def answer(conn: psycopg.Connection[Any], sql: str) -> Outcome:
    """The first value a SELECT sends, or its error's SQLSTATE and message."""
    return outcome(conn.pgconn.exec_(sql.encode()))


def test_escape_strings_read_as_postgresqls(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert [answer(conn, f"SELECT {written}") for written, _ in CASES] == [
            expected for _, expected in CASES
        ]
        # in a statement's other places, and the extended protocol's
        conn.execute("CREATE TABLE s(k INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO s VALUES (1, E'tab\\there'), (2, E'it\\'s')")
        cursor = conn.execute("SELECT k FROM s WHERE v = E'tab\\x09here' OR v = %s", ("x",))
        assert cursor.fetchall() == [(1,)]
        assert conn.execute("SELECT v FROM s WHERE k = %s", (2,)).fetchall() == [("it's",)]
        assert answer(conn, "SELECT 1; SELECT E'\\u00e9'") == "é".encode()


def written(text: str, how: list[int]) -> str:
    """`text` as an escape string, each character written one of the ways PostgreSQL reads."""
    parts = []
    for char, way in zip(text, how, strict=True):
        code, encoded = ord(char), char.encode()
        ways = [
            {"'": "''", "\\": "\\\\"}.get(char, char),
            f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08X}",
            "".join(f"\\x{b:02x}" for b in encoded),
            "".join(f"\\{b:03o}" for b in encoded),
        ]
        if code >= 0x10000:  # a pair of UTF-16 surrogates
            high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
            ways.append(f"\\u{high:04X}\\u{low:04x}")
        parts.append(ways[way % len(ways)])
    return "E'" + "".join(parts) + "'"


def test_escaped_text_reads_back_whole(dsn: str) -> None:
    texts = st.text(st.characters(exclude_categories=["Cs"], min_codepoint=1), max_size=40)
    with psycopg.connect(dsn, autocommit=True) as conn:

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            texts.flatmap(
                lambda t: st.tuples(
                    st.just(t), st.lists(st.integers(0, 4), min_size=len(t), max_size=len(t))
                )
            )
        )
        def reads_back(case: tuple[str, list[int]]) -> None:
            text, how = case
            assert answer(conn, f"SELECT {written(text, how)}") == text.encode()

        reads_back()
