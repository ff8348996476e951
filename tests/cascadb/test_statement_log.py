"""A logged statement keeps its shape and loses every value written in it."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from meterseal.cascadb.engine import parse
from meterseal.cascadb.statement_log import MAX_SHAPE, statement_shape


def _shape(sql: str, dialect: str = "sqlite") -> str:
    return statement_shape(parse(sql, dialect)[0], dialect)


def test_literals_become_question_marks_and_the_structure_stays() -> None:
    assert (
        _shape("SELECT ts, kwh FROM reading WHERE meter = 'm-9' AND ts BETWEEN 5 AND 9 LIMIT 3")
        == "SELECT ts, kwh FROM reading WHERE meter = ? AND ts BETWEEN ? AND ? LIMIT ?"
    )
    assert _shape("INSERT INTO t VALUES (?, x'00ff', TRUE, NULL, -7.5)") == (
        "INSERT INTO t VALUES ($1, ?, ?, NULL, -?)"
    )
    assert _shape("UPDATE t SET a = $1 WHERE b = E'secret'", "postgres") == (
        "UPDATE t SET a = $1 WHERE b = ?"
    )
    # type arguments are schema, not data; defaults are data
    assert _shape("CREATE TABLE t(a DECIMAL(10, 3) DEFAULT 1.5 PRIMARY KEY)", "postgres") == (
        "CREATE TABLE t (a DECIMAL(10, 3) DEFAULT ? PRIMARY KEY)"
    )


def test_comments_are_dropped() -> None:
    assert _shape("SELECT a /* meter m-9 */ FROM t -- for customer 7\n") == "SELECT a FROM t"


def test_a_long_statement_is_cut() -> None:
    values = ", ".join(f"({i})" for i in range(5000))
    shape = _shape(f"INSERT INTO t VALUES {values}")
    assert len(shape) == MAX_SHAPE + 1
    assert shape.endswith("…")


VALUE = st.text(string.ascii_letters + string.digits + " -_.'", min_size=1, max_size=20)


@given(
    texts=st.lists(VALUE, min_size=1, max_size=4),
    numbers=st.lists(st.integers(10**6, 10**12), min_size=1, max_size=4),
)
def test_no_value_of_any_statement_reaches_the_log(texts: list[str], numbers: list[int]) -> None:
    quoted = ["'SECRET" + t.replace("'", "''") + "'" for t in texts]
    rows = ", ".join(f"({q}, {n})" for q, n in zip(quoted, numbers, strict=False))
    for sql in (
        f"INSERT INTO t VALUES {rows}",
        f"SELECT a FROM t WHERE b IN ({', '.join(quoted)}) AND c > {numbers[0]}",
        f"UPDATE t SET a = {quoted[0]} WHERE c = {numbers[-1]}",
        f"DELETE FROM t WHERE a LIKE {quoted[-1]}",
    ):
        shape = _shape(sql)
        assert "SECRET" not in shape
        assert not any(str(n) in shape for n in numbers)
