"""psycopg sees CascaDB answer as PostgreSQL does: the same script, the same transcript.

Each script runs through psycopg against CascaDB's PostgreSQL protocol and, marked
`services`, against the real PostgreSQL (a fresh schema); both must give the transcript
written here: each statement's command tag or SQLSTATE, the transaction status psycopg
reads from ReadyForQuery, and rows as text (so a numeric's scale counts: 1.2 is not 1.20).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.pq import TransactionStatus

from meterseal.cascadb import Database, MemoryKv
from meterseal.cascadb import values as sv
from meterseal.cascadb.errors import DivisionByZero, NumericOverflow

IDLE, INTRANS, INERROR = "I", "T", "E"
_STATUS = {
    TransactionStatus.IDLE: IDLE,
    TransactionStatus.INTRANS: INTRANS,
    TransactionStatus.INERROR: INERROR,
}
Step = tuple[str, Sequence[Any]] | str


def status(conn: psycopg.Connection[Any]) -> TransactionStatus:
    """The transaction status now (a call: mypy keeps no narrowing of it across statements)."""
    return conn.info.transaction_status


def transcript(dsn: str, steps: Sequence[Step]) -> list[tuple[str, ...]]:
    """Each step's outcome: (tag or SQLSTATE, transaction status, rows as text...)."""
    out: list[tuple[str, ...]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for step in steps:
            sql, params = (step, None) if isinstance(step, str) else step
            try:
                cursor = conn.execute(sql, params)
                rows = cursor.fetchall() if cursor.description else []
                shown = tuple(",".join(str(v) for v in row) for row in rows)
                outcome: tuple[str, ...] = (cursor.statusmessage or "", *shown)
            except psycopg.Error as exc:
                outcome = (exc.sqlstate or "?",)
            out.append((outcome[0], _STATUS[conn.info.transaction_status], *outcome[1:]))
    return out


TABLE = "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)"


def test_an_error_in_a_block_aborts_it_until_rollback(dsn: str) -> None:
    steps: list[Step] = [
        TABLE,
        "BEGIN",
        "INSERT INTO t VALUES (1, 'one')",
        "INSERT INTO t VALUES (2, 'two'), (1, 'again')",  # a duplicate key
        "SELECT 1",
        ("INSERT INTO t VALUES (%s, %s)", (3, "three")),  # the extended protocol too
        "SET TimeZone = 'UTC'",
        "COMMIT",  # of a failed block: rolled back
        "SELECT k FROM t",
        "BEGIN",
        "SELEC 1",  # a statement that does not even parse aborts the block as well
        "SELECT 1",
        "ROLLBACK",
        "INSERT INTO t VALUES (4, 'four')",  # outside a block: each statement on its own
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("BEGIN", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("23505", INERROR),
        ("25P02", INERROR),
        ("25P02", INERROR),
        ("25P02", INERROR),
        ("ROLLBACK", IDLE),
        ("SELECT 0", IDLE),
        ("BEGIN", INTRANS),
        ("42601", INERROR),
        ("25P02", INERROR),
        ("ROLLBACK", IDLE),
        ("INSERT 0 1", IDLE),
    ]


def test_rollback_to_a_savepoint_ends_the_abort(dsn: str) -> None:
    steps: list[Step] = [
        TABLE,
        "BEGIN",
        "INSERT INTO t VALUES (1, 'one')",
        "SAVEPOINT sp",
        ("INSERT INTO t VALUES (%s, %s)", (1, "again")),
        "SELECT k FROM t",
        "ROLLBACK TO SAVEPOINT sp",
        "INSERT INTO t VALUES (2, 'two')",
        "COMMIT",
        "SELECT k FROM t ORDER BY k",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("BEGIN", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("SAVEPOINT", INTRANS),
        ("23505", INERROR),
        ("25P02", INERROR),
        ("ROLLBACK", INTRANS),
        ("INSERT 0 1", INTRANS),
        ("COMMIT", IDLE),
        ("SELECT 2", IDLE, "1", "2"),
    ]


def test_psycopgs_own_transactions_see_the_abort(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:  # not autocommit: psycopg sends BEGIN itself
        conn.execute(TABLE)
        conn.commit()
        conn.execute("INSERT INTO t VALUES (1, 'one')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO t VALUES (%s, %s)", (1, "again"))
        assert conn.info.transaction_status == TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT k FROM t")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]


def test_a_parent_row_named_by_a_child_is_kept(dsn: str) -> None:
    steps: list[Step] = [
        "CREATE TABLE p(id INTEGER PRIMARY KEY, code TEXT UNIQUE, name TEXT)",
        "CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id), "
        "code TEXT REFERENCES p(code))",
        "CREATE TABLE tree(id INTEGER PRIMARY KEY, up INTEGER REFERENCES tree(id))",
        "INSERT INTO p VALUES (1, 'a', 'one'), (2, 'b', 'two'), (3, 'c', 'three')",
        "INSERT INTO c VALUES (10, 1, NULL), (11, NULL, 'b')",
        ("INSERT INTO c VALUES (%s, %s, NULL)", (12, 9)),  # no parent 9
        "DELETE FROM p WHERE id = 1",  # c 10 names it
        ("DELETE FROM p WHERE id = %s", (2,)),  # c 11 names its code
        "UPDATE p SET id = 5 WHERE id = 1",
        "UPDATE p SET code = 'z' WHERE id = 2",
        "UPDATE p SET name = 'uno' WHERE id = 1",  # not a referred column
        "UPDATE p SET id = 6 WHERE id = 3",  # no child names 3
        "DELETE FROM p WHERE id = 6",
        "INSERT INTO tree VALUES (1, NULL), (2, 1)",  # a row naming one inserted with it
        "DELETE FROM tree WHERE id = 1",
        "DELETE FROM tree",  # parent and child go together
        "DROP TABLE p",
        "DELETE FROM c",
        "DELETE FROM p",
        "DROP TABLE c",
        "DROP TABLE p",
        "SELECT id FROM p",
    ]
    assert [outcome[0] for outcome in transcript(dsn, steps)] == [
        "CREATE TABLE",
        "CREATE TABLE",
        "CREATE TABLE",
        "INSERT 0 3",
        "INSERT 0 2",
        "23503",
        "23503",
        "23503",
        "23503",
        "23503",
        "UPDATE 1",
        "UPDATE 1",
        "DELETE 1",
        "INSERT 0 2",
        "23503",
        "DELETE 2",
        "2BP01",
        "DELETE 2",
        "DELETE 2",
        "DROP TABLE",
        "DROP TABLE",
        "42P01",
    ]


def test_dividing_by_zero_is_22012(dsn: str) -> None:
    steps: list[Step] = [
        "SELECT 10 / 0",
        "SELECT 10 % 0",
        "SELECT 10.5 / 0",
        ("SELECT %s / %s", (7, 0)),  # the extended protocol, bound values
        "SELECT NULL / 0",  # NULL first: no division happens
        "SELECT 7 / 2, -7 / 2, 7 % -3",
        "BEGIN",
        "SELECT 1 / 0",  # in a block: aborts it
        "SELECT 1",
        "ROLLBACK",
    ]
    assert transcript(dsn, steps) == [
        ("22012", IDLE),
        ("22012", IDLE),
        ("22012", IDLE),
        ("22012", IDLE),
        ("SELECT 1", IDLE, "None"),
        ("SELECT 1", IDLE, "3,-3,1"),
        ("BEGIN", INTRANS),
        ("22012", INERROR),
        ("25P02", INERROR),
        ("ROLLBACK", IDLE),
    ]


def test_is_not_null_is_the_negation_of_is_null(dsn: str) -> None:
    # sqlglot reads PostgreSQL's IS NOT NULL as one node, negated: CascaDB read it as IS NULL
    steps: list[Step] = [
        TABLE,
        "INSERT INTO t VALUES (1, 'one'), (2, NULL), (3, 'three')",
        "SELECT k FROM t WHERE v IS NOT NULL ORDER BY k",
        "SELECT k FROM t WHERE v NOTNULL ORDER BY k",
        "SELECT k FROM t WHERE NOT v IS NULL ORDER BY k",
        "SELECT k FROM t WHERE v IS NULL OR NOT (v IS NOT NULL)",
        "DELETE FROM t WHERE v IS NOT NULL",
        "SELECT count(*) FROM t",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("INSERT 0 3", IDLE),
        ("SELECT 2", IDLE, "1", "3"),
        ("SELECT 2", IDLE, "1", "3"),
        ("SELECT 2", IDLE, "1", "3"),
        ("SELECT 1", IDLE, "2"),
        ("DELETE 2", IDLE),
        ("SELECT 1", IDLE, "1"),
    ]
    database = Database(MemoryKv())  # SQLite's dialect read it as NOT (v IS NULL) already
    database.execute(TABLE)
    database.execute("INSERT INTO t VALUES (1, 'one'), (2, NULL)")
    assert database.execute("SELECT k FROM t WHERE v IS NOT NULL").rows == [(1,)]
    session = database.session(dialect="postgres")
    assert session.execute("SELECT k, v IS NOT NULL FROM t ORDER BY k").rows == [(1, 1), (2, 0)]


def test_a_where_without_from_filters_the_one_row(dsn: str) -> None:
    # CascaDB placed the condition on the first table's access, and with no FROM dropped it
    steps: list[Step] = [
        "SELECT 1 WHERE false",
        "SELECT 1 WHERE 1 = 2",
        "SELECT 2 WHERE 1 < 2",
        ("SELECT 3 WHERE %s::int > 0", (0,)),
        TABLE,
        "SELECT 4, (SELECT 5 WHERE false) WHERE NOT EXISTS (SELECT 1 WHERE false)",
        "SELECT k FROM t WHERE EXISTS (SELECT 1 WHERE t.k = 1)",
    ]
    assert transcript(dsn, steps) == [
        ("SELECT 0", IDLE),
        ("SELECT 0", IDLE),
        ("SELECT 1", IDLE, "2"),
        ("SELECT 0", IDLE),
        ("CREATE TABLE", IDLE),
        ("SELECT 1", IDLE, "4,None"),
        ("SELECT 0", IDLE),
    ]
    database = Database(MemoryKv())  # SQLite's dialect, as sqlite3: no row either
    sqlite = sqlite3.connect(":memory:")
    for sql in ("SELECT 1 WHERE 0", "SELECT 1 WHERE 1 = 2", "SELECT 2 WHERE 1 < 2"):
        assert database.execute(sql).rows == sqlite.execute(sql).fetchall()
    sqlite.close()


def test_the_sqlite_dialect_keeps_sqlites_null_for_division_by_zero() -> None:
    database = Database(MemoryKv())  # the PEP 249 module's dialect and rule
    assert database.execute("SELECT 10 / 0, 10 % 0, 7 / 2").rows == [(None, None, 3)]
    with pytest.raises(DivisionByZero):
        database.session(dialect="postgres").execute("SELECT 10 / 0")


def test_numeric_columns_round_to_their_scale_and_refuse_overflow(dsn: str) -> None:
    steps: list[Step] = [
        "CREATE TABLE d(k NUMERIC(6, 2) PRIMARY KEY, v NUMERIC(10, 3), w DECIMAL(5, 2), "
        "n NUMERIC(4), u NUMERIC)",
        "INSERT INTO d VALUES (1.5, 1.23456, 2.345, 12.5, 1.5)",  # half away from zero
        "INSERT INTO d VALUES (2, -1.2345, -2.345, -12.5, 2)",
        (
            "INSERT INTO d VALUES (%s, %s, %s, %s, %s)",
            (Decimal("3.14159"), "7", 1, 0, Decimal("0.50")),
        ),
        "INSERT INTO d VALUES (4, 0, 999.995, 0, 0)",  # rounds to 1000.00: five digits
        "INSERT INTO d VALUES (4, 0, 12345.6, 0, 0)",
        "INSERT INTO d VALUES (4, 0, 0, 99999, 0)",
        "INSERT INTO d VALUES (4, 0, -999.994, 9999.4, 100)",
        "SELECT k, v, w, n, u FROM d ORDER BY k",
        "SELECT v FROM d WHERE k = 1.5",
        ("SELECT k FROM d WHERE k = %s", (Decimal("3.14"),)),
        "SELECT k FROM d WHERE k BETWEEN 1 AND 2.5 ORDER BY k",
        "UPDATE d SET v = v / 3 WHERE k = 2",
        "UPDATE d SET w = w * 1000 WHERE k = 2",
        "SELECT v, u * 4 FROM d WHERE k = 2",
        "SELECT SUM(v), SUM(w), MIN(k), MAX(n) FROM d",
        "SELECT CAST(2.5 AS NUMERIC(5, 2)), CAST(1.005 AS DECIMAL(4, 2))",
        "SELECT CAST(123.4 AS NUMERIC(3, 1))",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("INSERT 0 1", IDLE),
        ("INSERT 0 1", IDLE),
        ("INSERT 0 1", IDLE),
        ("22003", IDLE),
        ("22003", IDLE),
        ("22003", IDLE),
        ("INSERT 0 1", IDLE),
        (
            "SELECT 4",
            IDLE,
            "1.50,1.235,2.35,13,1.5",
            "2.00,-1.235,-2.35,-13,2",
            "3.14,7.000,1.00,0,0.50",
            "4.00,0.000,-999.99,9999,100",
        ),
        ("SELECT 1", IDLE, "1.235"),
        ("SELECT 1", IDLE, "3.14"),
        ("SELECT 2", IDLE, "1.50", "2.00"),
        ("UPDATE 1", IDLE),
        ("22003", IDLE),
        ("SELECT 1", IDLE, "-0.412,8"),
        ("SELECT 1", IDLE, "7.823,-998.99,1.50,9999"),
        ("SELECT 1", IDLE, "2.50,1.01"),
        ("22003", IDLE),
    ]


def test_errors_carry_postgresqls_sqlstates(dsn: str) -> None:
    steps: list[Step] = [
        "CREATE TABLE r(meter TEXT NOT NULL, ts BIGINT, kwh NUMERIC(10, 3), "
        "PRIMARY KEY (meter, ts))",
        "INSERT INTO r VALUES ('m1', 1, 0.5), ('m1', 2, 1.5)",
        "INSERT INTO r VALUES ('m1', 1, 0.5)",
        "INSERT INTO r VALUES (NULL, 3, 1)",
        "INSERT INTO r (ts) VALUES (4)",
        "SELECT nope FROM r",
        "SELECT * FROM nope",
        "SELECT FROM WHERE",
        "SELECT meter, COUNT(*), SUM(kwh) FROM r GROUP BY meter",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("INSERT 0 2", IDLE),
        ("23505", IDLE),
        ("23502", IDLE),
        ("23502", IDLE),
        ("42703", IDLE),
        ("42P01", IDLE),
        ("42601", IDLE),
        ("SELECT 1", IDLE, "m1,2,2.000"),
    ]


def test_a_query_of_several_statements_is_one_transaction(dsn: str) -> None:
    steps: list[Step] = [
        TABLE,
        "INSERT INTO t VALUES (1, 'one'); INSERT INTO t VALUES (2, 'two'), (1, 'again')",
        "SELECT count(*) FROM t",  # neither INSERT stayed
        "INSERT INTO t VALUES (3, 'three'); UPDATE t SET v = 'drei' WHERE k = 3",
        "SELECT k, v FROM t",
        "BEGIN; INSERT INTO t VALUES (4, 'four')",  # a block the Query opens stays open
        "ROLLBACK",
        "SELECT count(*) FROM t",
    ]
    assert transcript(dsn, steps) == [
        ("CREATE TABLE", IDLE),
        ("23505", IDLE),
        ("SELECT 1", IDLE, "0"),
        ("INSERT 0 1", IDLE),  # psycopg's statusmessage: the first statement's
        ("SELECT 1", IDLE, "3,drei"),
        ("BEGIN", INTRANS),
        ("ROLLBACK", IDLE),
        ("SELECT 1", IDLE, "1"),
    ]


@pytest.fixture(scope="module")
def postgresql(request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
    """One autocommit connection to PostgreSQL for a property's examples."""
    dsn = request.getfixturevalue("postgres_url").replace(
        "postgresql+psycopg://", "postgresql://", 1
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.mark.services
@given(
    digits=st.integers(min_value=0, max_value=10**12),
    exponent=st.integers(min_value=-9, max_value=4),
    negative=st.booleans(),
    precision=st.integers(min_value=1, max_value=12),
    data=st.data(),
)
def test_a_value_fits_numeric_p_s_as_postgresql_fits_it(
    postgresql: psycopg.Connection[Any],
    digits: int,
    exponent: int,
    negative: bool,
    precision: int,
    data: st.DataObject,
) -> None:
    scale = data.draw(st.integers(min_value=0, max_value=precision))
    value = Decimal((int(negative), tuple(map(int, str(digits))), exponent))
    try:
        ours = format(sv.fit_decimal(value, (precision, scale)), "f")  # as the protocol sends
    except NumericOverflow as exc:
        ours = exc.sqlstate
    try:
        row = postgresql.execute(f"SELECT %s::numeric({precision}, {scale})::text", (value,))
        theirs = str((row.fetchone() or ("",))[0])
    except psycopg.Error as exc:
        theirs = exc.sqlstate or "?"
    assert ours == theirs, (value, precision, scale)


def test_executes_until_a_sync_are_one_transaction(dsn: str) -> None:
    # psycopg's executemany pipelines its INSERTs up to one Sync: PostgreSQL runs them as
    # one implicit transaction, so a failing row leaves none of them.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TABLE)
        with pytest.raises(psycopg.errors.UniqueViolation), conn.cursor() as cursor:
            cursor.executemany("INSERT INTO t VALUES (%s, %s)", [(1, "a"), (2, "b"), (1, "c")])
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO t VALUES (%s, %s)", [(1, "a"), (2, "b")])
        assert conn.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (2,)]


def test_a_numeric_precision_or_scale_past_postgresqls_is_refused(dsn: str) -> None:
    # NUMERIC(3000000, 2000000) made a value of two million digits from one short statement
    # (two thousand million, a server's memory): PostgreSQL takes precision 1 to 1000 and
    # scale -1000 to 1000 only.
    steps: list[Step] = [
        "SELECT CAST(1.5 AS NUMERIC(3000000, 2000000))",
        "SELECT CAST(1.5 AS NUMERIC(20, 2000))",
        "SELECT CAST(1.5 AS NUMERIC(0))",
        "CREATE TABLE wide(k INTEGER PRIMARY KEY, v NUMERIC(1001, 2))",
        "CREATE TABLE wide(k INTEGER PRIMARY KEY, v NUMERIC(1000, 2))",
        "INSERT INTO wide VALUES (1, 1.5)",
        "SELECT v FROM wide",
    ]
    assert transcript(dsn, steps) == [
        ("22023", IDLE),
        ("22023", IDLE),
        ("22023", IDLE),
        ("22023", IDLE),
        ("CREATE TABLE", IDLE),
        ("INSERT 0 1", IDLE),
        ("SELECT 1", IDLE, "1.50"),
    ]


def test_a_numeric_past_postgresqls_range_is_an_overflow(dsn: str) -> None:
    # CAST('1e999999999' AS NUMERIC) was a value whose text is a thousand million digits
    # (a server's memory), and an arithmetic overflow escaped as decimal.Overflow (a 500,
    # a dropped session): PostgreSQL holds 131,072 digits before the point, 16,383 after.
    steps: list[Step] = [
        "SELECT CAST('1e131072' AS NUMERIC)",
        "SELECT CAST('1e-16384' AS NUMERIC)",
        ("SELECT CAST(%s AS NUMERIC)", (Decimal("1e999999999"),)),
        "SELECT " + " * ".join(["CAST('1e131071' AS NUMERIC)"] * 8),  # 1e1048568
        "SELECT 1 WHERE CAST('1e131071' AS NUMERIC) > 0 AND CAST('1e-16383' AS NUMERIC) > 0",
    ]
    assert transcript(dsn, steps) == [
        ("22003", IDLE),
        ("22003", IDLE),
        ("22003", IDLE),
        ("22003", IDLE),
        ("SELECT 1", IDLE, "1"),
    ]


def test_a_block_that_only_reads_holds_up_no_writer_and_reads_committed(dsn: str) -> None:
    with (
        psycopg.connect(dsn, autocommit=True) as other,
        psycopg.connect(dsn, autocommit=True) as block,
    ):
        other.execute(TABLE)
        other.execute("INSERT INTO t VALUES (1, 'one')")
        block.execute("BEGIN")
        assert block.execute("SELECT k FROM t").fetchall() == [(1,)]
        other.execute("INSERT INTO t VALUES (2, 'two')")  # does not wait for the block
        assert block.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (2,)]
        assert block.execute("UPDATE t SET v = 'uno' WHERE k = 1").rowcount == 1
        block.execute("COMMIT")
        assert other.execute("SELECT v FROM t ORDER BY k").fetchall() == [("uno",), ("two",)]


def test_a_statement_not_utf8_is_22021_and_the_session_goes_on(dsn: str) -> None:
    def sqlstate(result: psycopg.pq.abc.PGresult) -> bytes | None:
        return result.error_field(psycopg.pq.DiagnosticField.SQLSTATE)

    with psycopg.connect(dsn, autocommit=True) as conn:
        assert sqlstate(conn.pgconn.exec_(b"SELECT '\xff'")) == b"22021"  # bytes as sent
        assert status(conn) == TransactionStatus.IDLE
        conn.execute("BEGIN")
        assert sqlstate(conn.pgconn.exec_(b"SELECT '\xc3\x28'")) == b"22021"
        assert status(conn) == TransactionStatus.INERROR
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT 1").fetchone() == (1,)
