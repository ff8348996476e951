"""psycopg and psql talk to CascaDB over the PostgreSQL wire protocol, unchanged: queries,
both protocols, transactions, the idle-in-transaction limit (pgwire_queries.py)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from tests.cascadb.pg_client import (
    SEVEN,
    Running,
    logged_in,
    message,
    two_sessions,
    until_ready,
)


def test_psycopg_with_parameters_prepared_statements_and_transactions(running: Running) -> None:
    with psycopg.connect(running.dsn()) as conn:
        conn.execute(
            "CREATE TABLE reading(meter TEXT, ts BIGINT, kwh NUMERIC(10, 3), "
            "PRIMARY KEY (meter, ts))"
        )
        with conn.cursor() as cur:
            rows = [("m1", t, Decimal(t) / 4) for t in range(8)]
            cur.executemany("INSERT INTO reading VALUES (%s, %s, %s)", rows)
            cur.execute(
                "SELECT ts, kwh FROM reading WHERE meter = %s AND ts >= %s "
                "ORDER BY ts DESC LIMIT 2",
                ("m1", 3),
            )
            assert cur.fetchall() == [(7, Decimal("1.75")), (6, Decimal("1.5"))]
            assert [c.name for c in cur.description or []] == ["ts", "kwh"]
            for t in range(8):  # psycopg prepares the statement after a few runs
                cur.execute(
                    "SELECT kwh FROM reading WHERE meter = %s AND ts = %s", ("m1", t), prepare=t > 2
                )
                assert cur.fetchone() == (Decimal(t) / 4,)
        conn.commit()
        conn.execute("DELETE FROM reading")
        conn.rollback()
        assert conn.execute("SELECT COUNT(*), SUM(kwh) FROM reading").fetchone() == (
            8,
            Decimal("7"),
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO reading VALUES ('m1', 1, 0)")
        conn.rollback()
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("SELEC 1")
    assert not any("m1" in line for line in running.logged)  # statements logged without values


def test_the_simple_query_protocol_runs_several_statements(running: Running) -> None:
    with psycopg.connect(running.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE t(a INT PRIMARY KEY, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, NULL)"
        )
        cur.execute("SELECT a, b FROM t ORDER BY a")
        assert cur.fetchall() == [(1, "x"), (2, None)]
        assert conn.execute("SELECT 1.5, 'y', NULL").fetchone() == (1.5, "y", None)


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_a_psql_session(running: Running) -> None:
    script = (
        "CREATE TABLE meter(id INT PRIMARY KEY, name TEXT);\n"
        "INSERT INTO meter VALUES (10, 'ten'), (9, 'nine');\n"
        "SELECT id, name FROM meter ORDER BY id;\n"
    )
    done = subprocess.run(
        ["psql", running.dsn(), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CREATE", "TABLE", "INSERT", "0", "2", "9|nine", "10|ten"]


def test_the_log_names_statements_without_their_values(running: Running) -> None:
    with psycopg.connect(running.dsn(user="mdc"), autocommit=True) as conn:
        conn.execute("CREATE TABLE r(meter TEXT PRIMARY KEY, kwh NUMERIC(10, 3))")
        conn.execute("INSERT INTO r VALUES ('CUST-SECRET-7', 4242.125) /* by hand */")
        conn.execute("SELECT kwh FROM r WHERE meter = %s", ("CUST-PARAM-8",), prepare=True)
        conn.execute("SELECT kwh FROM r WHERE meter = %s", ("CUST-PARAM-9",))
    logged = "\n".join(running.logged)
    for value in ("CUST-SECRET-7", "4242", "CUST-PARAM-8", "CUST-PARAM-9", "by hand"):
        assert value not in logged
    assert "mdc: INSERT INTO r VALUES (?, ?)" in running.logged
    assert "mdc: SELECT kwh FROM r WHERE meter = $1" in running.logged
    assert "mdc: CREATE TABLE r (meter TEXT PRIMARY KEY, kwh DECIMAL(10, 3))" in running.logged


@pytest.mark.parametrize("length", [2, 0x7FFF_FFF0])
def test_a_message_of_impossible_length_after_login_ends_the_session_counted(
    running: Running, length: int
) -> None:
    with logged_in(running) as sock:
        sock.sendall(b"Q" + struct.pack("!I", length))
        assert sock.recv(1) == b""  # closed, nothing buffered for it
    assert running.server.counts["refused"] == 1


@pytest.mark.parametrize(
    "message",
    [
        b"P" + struct.pack("!I", 7) + b"abc",  # a Parse without its name's NUL
        # A Bind of a statement parsed, cut short in its parameters' formats.
        b"P"
        + struct.pack("!I", 16)
        + b"\x00SELECT 1\x00\x00\x00"
        + b"B"
        + struct.pack("!I", 9)
        + b"\x00\x00\x00\x02\x00",
    ],
    ids=["no-nul", "cut-short"],
)
def test_a_message_that_does_not_parse_is_one_protocol_error(
    running: Running, message: bytes
) -> None:
    with logged_in(running) as sock:
        sock.sendall(message)
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes the session
            answer += chunk
    assert answer.endswith(b"C08P01\x00Minvalid message\x00\x00"), answer  # ErrorResponse
    assert running.server.counts["refused"] == 1
    with psycopg.connect(running.dsn()) as conn:  # and others are served
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    ("oid", "binary", "raw"),
    [(20, 0, b"abc"), (1700, 0, b"1.2.3"), (1184, 0, b"soon"), (701, 1, b"\x00\x01\x02")],
    ids=["int8", "numeric", "timestamptz", "float8-binary"],
)
def test_a_parameter_that_is_not_its_type_is_a_statement_error(
    running: Running, oid: int, binary: int, raw: bytes
) -> None:
    # As PostgreSQL: 22P02 for that statement, and the session goes on after Sync.
    parse = message(b"P", b"\x00SELECT $1\x00" + struct.pack("!HI", 1, oid))
    bind = message(
        b"B", b"\x00\x00" + struct.pack("!HHHI", 1, binary, 1, len(raw)) + raw + b"\x00\x00"
    )
    execute = message(b"E", b"\x00" + struct.pack("!I", 0))
    with logged_in(running) as sock:
        sock.sendall(parse + bind + execute + message(b"S", b""))
        answer = until_ready(sock)
        assert b"C22P02\x00" in answer, answer
        sock.sendall(message(b"Q", b"SELECT 7\x00"))
        answer = until_ready(sock)
        assert SEVEN in answer, answer


def test_a_query_outside_a_block_reads_while_another_session_writes(running: Running) -> None:
    with two_sessions(running, autocommit=False) as (writer, reader):
        writer.execute("INSERT INTO t VALUES (1)")  # a write transaction left open
        # readers: extended protocol (psycopg's execute) and simple (several SELECTs)
        assert reader.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        assert reader.execute("SELECT k FROM t WHERE k = %s", (1,)).fetchall() == []
        simple = reader.pgconn.exec_(b"SELECT count(*) FROM t; SELECT 2")
        assert simple.error_message == b""
        assert simple.get_value(0, 0) == b"2"
        assert reader.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        # the write lock is held meanwhile: a write waits for it and fails
        with pytest.raises(psycopg.errors.lookup("57000")):
            reader.execute("INSERT INTO t VALUES (2)")
        writer.commit()
        assert reader.execute("SELECT k FROM t").fetchall() == [(1,)]


@pytest.fixture
def limited() -> Iterator[Running]:
    """A server that ends a session idle in a transaction after 0.2 s."""
    server = Running(idle_in_transaction_timeout=0.2)
    yield server
    server.stop()


def test_a_session_idle_in_a_write_transaction_is_ended(limited: Running) -> None:
    with (
        psycopg.connect(limited.dsn()) as idle,
        psycopg.connect(limited.dsn(), autocommit=True) as other,
    ):
        other.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
        idle.execute("INSERT INTO t VALUES (1)")  # then nothing: it holds the write lock
        # waits (up to lock_timeout, 30 s) for the idle session to be ended and rolled back
        other.execute("INSERT INTO t VALUES (2)")
        assert other.execute("SELECT k FROM t").fetchall() == [(2,)]
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):  # FATAL 25P03
            idle.execute("SELECT 1")
    assert limited.server.counts["idle_timeouts"] == 1


def test_a_session_idle_in_a_block_is_ended_even_holding_no_lock(limited: Running) -> None:
    # As PostgreSQL's idle_in_transaction_session_timeout: a block that has only read, and a
    # failed one, are ended too; a session outside a block is not.
    with (
        psycopg.connect(limited.dsn()) as reading,
        psycopg.connect(limited.dsn(), autocommit=True) as failed,
        psycopg.connect(limited.dsn(), autocommit=True) as outside,
    ):
        assert reading.execute("SELECT 1").fetchone() == (1,)  # psycopg's BEGIN, a read
        failed.execute("BEGIN")
        with pytest.raises(psycopg.errors.SyntaxError):
            failed.execute("SELEC 1")
        outside.execute("SELECT 1")
        pause = threading.Event()  # never set: a bounded wait that fails, never hangs
        for _ in range(300):
            if limited.server.counts["idle_timeouts"] == 2:
                break
            pause.wait(0.1)
        assert limited.server.counts["idle_timeouts"] == 2
        for conn in (reading, failed):
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                conn.execute("SELECT 1")
        assert outside.execute("SELECT 2").fetchone() == (2,)


def test_a_write_transaction_stalled_mid_message_is_ended_as_an_idle_one(
    limited: Running,
) -> None:
    with logged_in(limited) as sock:
        for sql in (
            b"CREATE TABLE t(k INTEGER PRIMARY KEY)",
            b"BEGIN",
            b"INSERT INTO t VALUES (1)",
        ):
            sock.sendall(message(b"Q", sql + b"\x00"))
            until_ready(sock, b"I" if sql.startswith(b"CREATE") else b"T")
        sock.sendall(b"Q\x00\x00")  # a message begun, then nothing: the write lock held
        answer = b""
        while chunk := sock.recv(4096):  # FATAL 25P03, then the session ends
            answer += chunk
        assert b"25P03" in answer
    assert limited.server.counts["idle_timeouts"] == 1
    assert limited.database.execute("INSERT INTO t VALUES (2)").rowcount == 1  # released


def test_a_block_that_reads_holds_no_write_lock_until_its_first_write(running: Running) -> None:
    busy = psycopg.errors.lookup("57000")
    # psycopg sends BEGIN before the block's first statement
    with two_sessions(running, autocommit=False) as (block, other):
        other.execute("INSERT INTO t VALUES (1)")
        assert block.execute("SELECT k FROM t").fetchall() == [(1,)]
        other.execute("INSERT INTO t VALUES (2)")  # as in PostgreSQL: the block holds it not up
        assert block.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (2,)]  # committed
        block.execute("INSERT INTO t VALUES (3)")  # its first write: now it is the writer
        with pytest.raises(busy):
            other.execute("INSERT INTO t VALUES (4)")
        block.commit()
        block.execute("SELECT k FROM t WHERE k = 1 FOR UPDATE")  # keeps what it read: the lock
        with pytest.raises(busy):
            other.execute("INSERT INTO t VALUES (5)")
        block.rollback()
        block.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")  # the open block's
        with pytest.raises(busy):
            other.execute("INSERT INTO t VALUES (6)")
        block.rollback()
        block.isolation_level = psycopg.IsolationLevel.SERIALIZABLE  # BEGIN ISOLATION LEVEL ...
        block.execute("SELECT 1")
        with pytest.raises(busy):
            other.execute("INSERT INTO t VALUES (7)")
        block.rollback()
        block.isolation_level = None
        block.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        block.commit()
        block.execute("SELECT 1")  # every block of the session now holds the lock
        with pytest.raises(busy):
            other.execute("INSERT INTO t VALUES (8)")
        block.rollback()
        assert other.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (2,), (3,)]


def test_a_statement_not_utf8_is_22021_and_the_session_goes_on(running: Running) -> None:
    # As PostgreSQL: an ErrorResponse, not the end of the session; in a block, it fails it.
    bad = b'invalid byte sequence for encoding "UTF8": 0xff'
    with logged_in(running) as sock:
        sock.sendall(message(b"Q", b"SELECT '\xff'\x00"))
        answer = until_ready(sock)  # idle: outside a block nothing else happens
        assert b"C22021\x00" in answer, answer
        assert bad in answer, answer
        sock.sendall(message(b"Q", b"BEGIN\x00"))
        until_ready(sock, b"T")
        sock.sendall(message(b"Q", b"SELECT '\xc3\x28'\x00"))
        assert b"C22021\x00" in until_ready(sock, b"E")  # the block has failed
        sock.sendall(message(b"Q", b"SELECT 7\x00"))
        assert b"C25P02\x00" in until_ready(sock, b"E")
        sock.sendall(message(b"Q", b"ROLLBACK\x00"))
        until_ready(sock)
        # the extended protocol: a Parse not UTF-8 fails, skipped to the Sync
        parse = message(b"P", b"\x00SELECT '\xff'\x00\x00\x00")
        bind = message(b"B", b"\x00\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(parse + bind + message(b"E", b"\x00\x00\x00\x00\x00") + message(b"S", b""))
        answer = until_ready(sock)
        assert answer.count(b"C22021\x00") == 1, answer
        # and a text parameter not UTF-8
        parse = message(b"P", b"\x00SELECT $1\x00" + struct.pack("!HI", 1, 25))
        bind = message(b"B", b"\x00\x00" + struct.pack("!HHHI", 1, 0, 1, 1) + b"\xff\x00\x00")
        sock.sendall(parse + bind + message(b"S", b""))
        assert b"C22021\x00" in until_ready(sock)
        sock.sendall(message(b"Q", b"SELECT 7\x00"))
        assert SEVEN in until_ready(sock)
    assert running.server.counts["refused"] == 0


def test_a_write_transaction_whose_client_reads_no_answer_is_ended_as_an_idle_one(
    limited: Running,
) -> None:
    # A client that holds the write lock and stops reading stalled the server's write of its
    # answer: the idle limit, on reading only, never came, and every writer waited for ever.
    limited.database.lock_timeout = 10.0  # waits for the stalled session to be ended
    big = "x" * (16 << 20)  # past the loopback's socket buffers: the server's write stalls
    with psycopg.connect(limited.dsn(), autocommit=True) as setup:
        setup.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
        setup.execute("INSERT INTO t VALUES (%s, %s)", (1, big))
    options = b"user\x00mdc\x00\x00"
    startup = struct.pack("!II", 8 + len(options), 196608) + options
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: kept small
        sock.settimeout(10)
        sock.connect(("127.0.0.1", limited.server.port))
        sock.sendall(startup)
        until_ready(sock)
        for sql, status in ((b"BEGIN", b"T"), (b"INSERT INTO t VALUES (2, 'two')", b"T")):
            sock.sendall(message(b"Q", sql + b"\x00"))
            until_ready(sock, status)
        sock.sendall(message(b"Q", b"SELECT v FROM t WHERE k = 1\x00"))  # then reads nothing
        # waits for the stalled session to be ended and rolled back, the lock released
        assert limited.database.execute("INSERT INTO t VALUES (3, 'three')").rowcount == 1
    assert limited.server.counts["idle_timeouts"] == 1
    assert [r[0] for r in limited.database.execute("SELECT k FROM t").rows] == [1, 3]


def test_a_function_of_arguments_it_does_not_take_is_an_error_not_the_end(
    running: Running,
) -> None:
    # trim(both 'x' from v), replace(v, 'x'), btrim(v, 'x') compiled; each row then raised a
    # TypeError, which no error response answered: the server closed the session
    with psycopg.connect(running.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES (1, 'one')")
        for sql in ("trim(both 'o' from v)", "replace(v, 'o')", "btrim(v, 'o')"):
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="arguments"):
                conn.execute(f"SELECT {sql} FROM t")
        assert conn.execute("SELECT replace(v, 'o', '0'), trim(v) FROM t").fetchall() == [
            ("0ne", "one")
        ]


def test_a_statement_cascadb_fails_to_evaluate_fails_alone(running: Running) -> None:
    # Each raised a Python exception no error response answered (OverflowError, ValueError,
    # IndexError, AttributeError: the session ended, a ValueError as 08P01), and round() of
    # 10**9 places held the GIL for hours; an error response has a SQLSTATE, a closed session none
    with psycopg.connect(running.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
        assert conn.execute("SELECT round(1.5, 100000)").fetchall()  # at most 30 places
        failing = {
            "SELECT k FROM t OFFSET v": "42703",  # read with the row scope, run with none
            "SELECT TIMESTAMP 'nope'": "22000",
            "SELECT 1e": "42601",  # as PostgreSQL 15's: trailing junk after a number
            "SELECT CAST(1e999999999 AS INTEGER)": "22003",
            "SELECT CAST('1e999999999' AS INTEGER)": "22P02",  # no integer's text, as PostgreSQL's
            "SELECT k FROM t LIMIT 1e309 - 1e309": "XX000",  # NaN, which no code reads yet
            "INSERT INTO t DEFAULT VALUES": "XX000",
            "SELECT (SELECT FROM t)": "XX000",
        }
        for sql, code in failing.items():
            with pytest.raises(psycopg.Error) as failed:
                conn.execute(sql)
            assert failed.value.sqlstate == code, sql
            assert conn.execute("SELECT k FROM t").fetchall() == [(1,)]
