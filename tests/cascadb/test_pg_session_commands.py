"""SET, DEALLOCATE, DISCARD and SHOW among other statements of one simple query, and SHOW of
the isolation level, answer as PostgreSQL's (the same outcomes from CascaDB and, marked
`services`, the real PostgreSQL)."""

from __future__ import annotations

import select
from collections.abc import Callable, Sequence

import psycopg
import pytest
from psycopg.pq import DiagnosticField, TransactionStatus
from psycopg.pq.abc import PGconn

from tests.cascadb.pg_client import Running, two_sessions
from tests.cascadb.test_pg_compat import IDLE, INERROR, INTRANS, TABLE, Step, transcript

Outcome = tuple[str, ...]
SHOWN = "SHOW default_transaction_isolation: "


def outcomes(dsn: str, queries: Sequence[str]) -> list[Outcome]:
    """Each simple query's results, every statement's ("TAG" or "TAG col: row; row"), or its
    error's SQLSTATE; then the transaction status ReadyForQuery told."""
    out: list[Outcome] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in queries:
            cursor = conn.cursor()
            shown: list[str] = []
            try:
                cursor.execute(sql)
                while True:
                    shown.append(_result(cursor))
                    if not cursor.nextset():
                        break
            except psycopg.Error as exc:
                shown = [exc.sqlstate or "?"]
            status = conn.info.transaction_status
            out.append((*shown, {TransactionStatus.INTRANS: INTRANS}.get(status, _idle(status))))
    return out


def _idle(status: TransactionStatus) -> str:
    return INERROR if status == TransactionStatus.INERROR else IDLE


def _result(cursor: psycopg.Cursor[tuple[object, ...]]) -> str:
    tag = cursor.statusmessage or ""
    if cursor.description is None:
        return tag
    columns = ",".join(column.name for column in cursor.description)
    rows = "; ".join(",".join(str(v) for v in row) for row in cursor.fetchall())
    return f"{tag} {columns}: {rows}"


def test_statements_after_a_session_command_run_each_in_order(dsn: str) -> None:
    queries = [
        TABLE,
        "SET TimeZone = 'UTC'; INSERT INTO t VALUES (1, 'one'); SELECT k FROM t",
        "INSERT INTO t VALUES (2, 'two'); SET application_name = 'meter'; "
        "SELECT count(*) AS n FROM t",
        "DEALLOCATE ALL; DISCARD PLANS; SELECT 3 AS three",
        "BEGIN; SET TRANSACTION READ ONLY; SELECT k FROM t WHERE k = 2; COMMIT",
        "SELECT 1 AS one; ",  # a trailing empty statement is no statement
    ]
    assert outcomes(dsn, queries) == [
        ("CREATE TABLE", IDLE),
        ("SET", "INSERT 0 1", "SELECT 1 k: 1", IDLE),
        ("INSERT 0 1", "SET", "SELECT 1 n: 2", IDLE),
        ("DEALLOCATE ALL", "DISCARD PLANS", "SELECT 1 three: 3", IDLE),
        ("BEGIN", "SET", "SELECT 1 k: 2", "COMMIT", IDLE),
        ("SELECT 1 one: 1", IDLE),
    ]


def test_an_error_stops_the_rest_and_rolls_back_the_implicit_transaction(dsn: str) -> None:
    queries = [
        TABLE,
        "SET TimeZone = 'UTC'; INSERT INTO t VALUES (1, 'one'); SELECT 1/0; "
        "INSERT INTO t VALUES (2, 'two')",
        "INSERT INTO t VALUES (3, 'three'); SET TimeZone = 'UTC'; SELEC 4",  # nothing runs
        # SET is transactional: undone with the implicit transaction it was in
        "SET default_transaction_isolation = 'serializable'; SELECT 1/0",
        "SHOW default_transaction_isolation",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ; "
        "SELECT 1 AS one",
        "SHOW default_transaction_isolation",
        "BEGIN",
        "SELECT 1/0",
        "SET TimeZone = 'UTC'; SELECT 1",  # an aborted block: refused from its first statement
        "ROLLBACK; SELECT count(*) AS n FROM t",
        # in a block: undone by its ROLLBACK, or by a ROLLBACK TO of a savepoint before it
        "BEGIN; SET default_transaction_isolation = 'serializable'; ROLLBACK; "
        "SHOW default_transaction_isolation",
        "BEGIN; SAVEPOINT a; SET default_transaction_isolation = 'read committed'; "
        "ROLLBACK TO a; SHOW default_transaction_isolation; SAVEPOINT b; "
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE; RELEASE b; "
        "COMMIT",
        "SHOW default_transaction_isolation",
    ]
    assert outcomes(dsn, queries) == [
        ("CREATE TABLE", IDLE),
        ("22012", IDLE),
        ("42601", IDLE),
        ("22012", IDLE),
        ("SHOW default_transaction_isolation: read committed", IDLE),
        ("SET", "SELECT 1 one: 1", IDLE),
        ("SHOW default_transaction_isolation: repeatable read", IDLE),
        ("BEGIN", INTRANS),
        ("22012", INERROR),
        ("25P02", INERROR),
        ("ROLLBACK", "SELECT 1 n: 0", IDLE),
        ("BEGIN", "SET", "ROLLBACK", f"{SHOWN}repeatable read", IDLE),
        (
            "BEGIN",
            "SAVEPOINT",
            "SET",
            "ROLLBACK",
            f"{SHOWN}repeatable read",
            "SAVEPOINT",
            "SET",
            "RELEASE",
            "COMMIT",
            IDLE,
        ),
        ("SHOW default_transaction_isolation: serializable", IDLE),
    ]


def test_discard_all_runs_alone_outside_a_block(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 1 WHERE 1 = %s", [1], prepare=True)  # a named prepared statement
    queries = [
        "DISCARD ALL",
        "SELECT 1; DISCARD ALL",  # several statements are a transaction block
        "DISCARD ALL; SELECT 1",
        "BEGIN",
        "DISCARD ALL",
        "ROLLBACK",
        "DISCARD TEMPORARY; DISCARD SEQUENCES",
    ]
    assert outcomes(dsn, queries) == [
        ("DISCARD ALL", IDLE),
        ("25001", IDLE),
        ("25001", IDLE),
        ("BEGIN", INTRANS),
        ("25001", INERROR),
        ("ROLLBACK", IDLE),
        ("DISCARD TEMP", "DISCARD SEQUENCES", IDLE),
    ]


def test_show_transaction_isolation_tells_the_sessions_level(dsn: str) -> None:
    queries = [
        "SHOW transaction_isolation",
        "SHOW TRANSACTION ISOLATION LEVEL",
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SHOW transaction_isolation; COMMIT",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SHOW transaction_isolation",
        "SHOW transaction_isolation; SET transaction_isolation = 'serializable'; "
        "SHOW transaction_isolation",  # SHOW is no query: the level may still change
        "BEGIN",
        "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        "SHOW transaction_isolation",
        "ROLLBACK",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SHOW transaction_isolation",
        "SHOW work_mem_of_cascadb",
    ]
    answers = outcomes(dsn, queries)
    assert answers[:-1] == [
        ("SHOW transaction_isolation: read committed", IDLE),
        ("SHOW transaction_isolation: read committed", IDLE),
        ("BEGIN", "SHOW transaction_isolation: repeatable read", "COMMIT", IDLE),
        ("SET", "SHOW transaction_isolation: serializable", IDLE),
        (
            "SHOW transaction_isolation: read committed",
            "SET",
            "SHOW transaction_isolation: serializable",
            IDLE,
        ),
        ("BEGIN", INTRANS),
        ("SET", INTRANS),
        ("SHOW transaction_isolation: read uncommitted", INTRANS),
        ("ROLLBACK", IDLE),
        ("SET", IDLE),
        ("SHOW transaction_isolation: serializable", IDLE),
    ]
    assert answers[-1][0] in ("42704", "0A000")  # unknown to PostgreSQL; unsupported here


def test_show_over_the_extended_protocol(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET default_transaction_isolation = 'repeatable read'", prepare=True)
        cursor = conn.execute("SHOW transaction_isolation", prepare=True)
        assert cursor.fetchall() == [("repeatable read",)]
        assert cursor.description is not None
        assert [c.name for c in cursor.description] == ["transaction_isolation"]


def test_a_query_of_session_commands_and_selects_waits_for_no_writer(running: Running) -> None:
    # A Query that began with SET or SHOW took the write lock for its implicit transaction
    # (the session command was read ahead as a write): it waited for the open writer, failing.
    with two_sessions(running, autocommit=False) as (writer, reader):
        writer.execute("INSERT INTO t VALUES (1)")  # a write transaction left open
        for sql in (
            "SET TimeZone = 'UTC'; SELECT count(*) FROM t",
            "SHOW transaction_isolation; SELECT count(*) FROM t",
            "SET TimeZone = 'UTC'; SHOW transaction_isolation",
        ):
            done = reader.pgconn.exec_(sql.encode())
            assert done.error_message == b"", (sql, done.error_message)
            assert reader.info.transaction_status is TransactionStatus.IDLE
        written = reader.pgconn.exec_(b"SET TimeZone = 'UTC'; INSERT INTO t VALUES (2)")
        assert b"busy" in written.error_message  # a write still waits for the lock
        writer.commit()
        assert reader.execute("SELECT k FROM t").fetchall() == [(1,)]


def test_a_query_that_failed_before_its_transaction_leaves_no_reader_for_the_next(
    running: Running,
) -> None:
    # Read ahead as a reader (its first statement after the SET is a SELECT), the Query failed
    # at its SET; the next transaction began as that reader: a SERIALIZABLE block without the
    # write lock.
    with two_sessions(running) as (block, other):
        failed = block.pgconn.exec_(
            b"SET default_transaction_isolation = 'seralizable'; SELECT 1; COMMIT"
        )
        assert b"seralizable" in failed.error_message
        block.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        block.execute("BEGIN")  # serializable: the write lock at BEGIN
        with pytest.raises(psycopg.errors.lookup("57000")):
            other.execute("INSERT INTO t VALUES (1)")
        block.execute("ROLLBACK")
        other.execute("INSERT INTO t VALUES (2)")


def test_statements_before_begin_in_one_query_belong_to_its_block(dsn: str) -> None:
    # As PostgreSQL's: the statements of a Query before its BEGIN are in the implicit block
    # that BEGIN makes explicit, so an error after it rolls them back too (CascaDB committed
    # the first INSERT on its own); a COMMIT or ROLLBACK ends the implicit block it is in, and
    # the statements after it are the next one.
    count = "SELECT count(*) AS n FROM t"
    queries = [
        TABLE,
        "INSERT INTO t VALUES (1, 'one'); BEGIN; INSERT INTO t VALUES (2, 'two'); "
        "SELECT 1/0; COMMIT",
        "ROLLBACK",
        count,
        "INSERT INTO t VALUES (3, 'three'); BEGIN; INSERT INTO t VALUES (4, 'four')",
        "COMMIT",
        count,
        "INSERT INTO t VALUES (5, 'five'); COMMIT; INSERT INTO t VALUES (6, 'six'); SELECT 1/0",
        count,
        "INSERT INTO t VALUES (7, 'seven'); ROLLBACK; INSERT INTO t VALUES (8, 'eight')",
        "SELECT k FROM t ORDER BY k",
        "INSERT INTO t VALUES (9, 'nine'); BEGIN READ ONLY; INSERT INTO t VALUES (10, 'ten')",
        "ROLLBACK",
        count,
    ]
    assert outcomes(dsn, queries) == [
        ("CREATE TABLE", IDLE),
        ("22012", INERROR),
        ("ROLLBACK", IDLE),
        ("SELECT 1 n: 0", IDLE),
        ("INSERT 0 1", "BEGIN", "INSERT 0 1", INTRANS),
        ("COMMIT", IDLE),
        ("SELECT 1 n: 2", IDLE),
        ("22012", IDLE),
        ("SELECT 1 n: 3", IDLE),
        ("INSERT 0 1", "ROLLBACK", "INSERT 0 1", IDLE),
        ("SELECT 4 k: 3; 4; 5; 8", IDLE),
        ("25006", INERROR),
        ("ROLLBACK", IDLE),
        ("SELECT 1 n: 4", IDLE),
    ]


def test_a_savepoint_outside_a_block_is_25p01(dsn: str) -> None:
    # PostgreSQL's savepoints live in transaction blocks only (25P01); over its protocol a
    # SAVEPOINT outside one opened a transaction (SQLite's rule, kept for the other interfaces)
    queries = [
        TABLE,
        "SAVEPOINT s",
        "RELEASE SAVEPOINT s",
        "ROLLBACK TO SAVEPOINT s",
        "INSERT INTO t VALUES (1, 'one'); SAVEPOINT s; INSERT INTO t VALUES (2, 'two')",
        "SELECT count(*) AS n FROM t",
        "BEGIN; SAVEPOINT s; INSERT INTO t VALUES (3, 'three'); RELEASE s; COMMIT",
        "SELECT count(*) AS n FROM t",
    ]
    assert outcomes(dsn, queries) == [
        ("CREATE TABLE", IDLE),
        ("25P01", IDLE),
        ("25P01", IDLE),
        ("25P01", IDLE),
        ("25P01", IDLE),
        ("SELECT 1 n: 0", IDLE),
        ("BEGIN", "SAVEPOINT", "INSERT 0 1", "RELEASE", "COMMIT", IDLE),
        ("SELECT 1 n: 1", IDLE),
    ]


def test_a_query_opening_a_block_after_a_session_command_reads_unlocked(
    running: Running,
) -> None:
    # The implicit transaction a BEGIN makes a block is read ahead past that BEGIN: in a read
    # committed session `SET ...; BEGIN; SELECT ...` is a reader, as `BEGIN; SELECT ...` is,
    # and one that wrote before its BEGIN holds the write lock.
    with two_sessions(running) as (block, other):
        block.pgconn.exec_(b"SET TimeZone = 'UTC'; BEGIN; SELECT count(*) FROM t")
        assert block.info.transaction_status is TransactionStatus.INTRANS
        other.execute("INSERT INTO t VALUES (1)")  # no lock held
        block.execute("ROLLBACK")
        block.pgconn.exec_(b"INSERT INTO t VALUES (2); BEGIN; SELECT count(*) FROM t")
        assert block.info.transaction_status is TransactionStatus.INTRANS
        with pytest.raises(psycopg.errors.lookup("57000")):
            other.execute("INSERT INTO t VALUES (3)")
        block.execute("COMMIT")
        assert other.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (2,)]


def test_a_savepoint_in_an_implicit_extended_transaction_is_25p01(dsn: str) -> None:
    # Executes up to a Sync are an implicit transaction, no block: a SAVEPOINT there fails and
    # the implicit transaction rolls back with it, as PostgreSQL's
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TABLE)

        def pipelined() -> None:
            with conn.pipeline():
                conn.execute("INSERT INTO t VALUES (%s, %s)", (1, "one"))
                conn.execute("SAVEPOINT s")

        with pytest.raises(psycopg.errors.lookup("25P01")):
            pipelined()
        assert conn.info.transaction_status is TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        with pytest.raises(psycopg.errors.lookup("25P01")):
            conn.execute("RELEASE SAVEPOINT s", ())  # on its own too


def test_deallocate_of_an_unknown_statement_is_26000(dsn: str) -> None:
    # It succeeded doing nothing; PostgreSQL's fails (aborting a block), as Bind and Describe
    # of an unknown statement do, and Describe of an unknown portal (34000)
    missing = psycopg.errors.InvalidSqlStatementName
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepared = "SELECT 1 WHERE 1 = %s"
        conn.execute(prepared, [1], prepare=True)
        conn.execute("DEALLOCATE _pg3_0")  # psycopg's name of it
        with pytest.raises(missing):
            conn.execute(prepared, [1], prepare=True)  # psycopg binds what it prepared
        with pytest.raises(missing):
            conn.execute("DEALLOCATE _pg3_0")
        with pytest.raises(missing):
            conn.execute("DEALLOCATE PREPARE _PG3_0")  # an unquoted name: lower case
        conn.execute("DEALLOCATE ALL")
        conn.execute("BEGIN")
        with pytest.raises(missing):
            conn.execute("DEALLOCATE nothing")
        assert conn.info.transaction_status is TransactionStatus.INERROR
        conn.execute("ROLLBACK")
        pgconn = conn.pgconn
        assert _sqlstate(pgconn, pgconn.send_describe_prepared) == b"26000"
        assert _sqlstate(pgconn, pgconn.send_describe_portal) == b"34000"
        assert conn.execute("SELECT 1").fetchall() == [(1,)]


def _sqlstate(pgconn: PGconn, send: Callable[[bytes], None]) -> bytes | None:
    """The SQLSTATE the server answers `send(b"nothing")` with (libpq's non-blocking call: its
    blocking one holds the GIL that CascaDB's server thread in this process needs)."""
    send(b"nothing")
    while pgconn.flush():
        pass
    code = None
    while True:
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [], 10)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return code
        code = code or result.error_field(DiagnosticField.SQLSTATE)


def test_deallocate_reads_its_name_as_postgresql_reads_an_identifier(dsn: str) -> None:
    # The name was the Query's next word: "a b" was two (42601, where PostgreSQL's looks the
    # statement up), "" the unnamed statement (dropped, where PostgreSQL's refuses a
    # zero-length name) and DEALLOCATE PREPARE a syntax error (PostgreSQL's: a name)
    steps: list[Step] = [
        ("SELECT %s::integer", (1,)),  # the unnamed statement, parsed
        'DEALLOCATE ""',
        'DEALLOCATE "a b"',
        'DEALLOCATE PREPARE "a""b"',
        "DEALLOCATE PREPARE",
        'DEALLOCATE "ALL"',  # a name, not ALL
        "DEALLOCATE PREPARE ALL",
    ]
    assert transcript(dsn, steps) == [
        ("SELECT 1", IDLE, "1"),
        ("42601", IDLE),
        ("26000", IDLE),
        ("26000", IDLE),
        ("26000", IDLE),
        ("26000", IDLE),
        ("DEALLOCATE ALL", IDLE),
    ]
