"""psycopg and psql talk to CascaDB over the PostgreSQL wire protocol, unchanged."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meterseal.cascadb import Database, MemoryKv, ProgrammingError
from meterseal.cascadb.pgwire import UNSAFE_TRUST, PgServer

SEVEN = b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x017"  # the DataRow of `SELECT 7`


class Running:
    """A PgServer on port 0 in a loop thread; what it logged."""

    def __init__(self, **options: object) -> None:
        self.logged: list[str] = []
        self.database = Database(MemoryKv())
        self.loop = asyncio.new_event_loop()
        options.setdefault("authenticate", UNSAFE_TRUST)
        self.server = PgServer(self.database, log=self.logged.append, **options)  # type: ignore[arg-type]
        self.loop.run_until_complete(self.server.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def dsn(self, user: str = "mdc", password: str = "") -> str:
        """A libpq connection string to the server (no TLS)."""
        secret = f" password={password}" if password else ""
        where = f"host=127.0.0.1 port={self.server.port}"
        return f"{where} user={user} dbname=meter sslmode=disable{secret}"

    def stop(self) -> None:
        """Close the server and its loop."""
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


@pytest.fixture
def running() -> Iterator[Running]:
    server = Running()
    yield server
    server.stop()


def _message(kind: bytes, body: bytes) -> bytes:
    """A protocol message: its kind, its length, its body."""
    return kind + struct.pack("!I", len(body) + 4) + body


def _until_ready(sock: socket.socket, status: bytes = b"I") -> bytes:
    """What the server sends up to its ReadyForQuery of `status` (I idle, T block, E failed)."""
    received = b""
    while not received.endswith(b"Z\x00\x00\x00\x05" + status):
        chunk = sock.recv(4096)
        assert chunk, received  # the session goes on
        received += chunk
    return received


@contextmanager
def _logged_in(running: Running) -> Iterator[socket.socket]:
    """A raw client's socket, logged in (trust) and past its first ReadyForQuery."""
    options = b"user\x00mdc\x00\x00"
    startup = struct.pack("!II", 8 + len(options), 196608) + options
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(startup)
        _until_ready(sock)
        yield sock


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


def test_a_password_is_checked_when_asked() -> None:
    server = Running(
        authenticate=lambda user, password, _source: (user, password) == ("mdc", "s3cret")
    )
    try:
        with psycopg.connect(server.dsn(password="s3cret")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.dsn(password="wrong"))
        # No SCRAM (docs/cascadb.md): a client that insists on it is told why it cannot.
        scram = server.dsn(password="s3cret") + " require_auth=scram-sha-256"
        with pytest.raises(psycopg.OperationalError, match="requested a cleartext password"):
            psycopg.connect(scram)
    finally:
        server.stop()


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


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cascadb test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_when_the_server_has_a_context(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = Running(tls=context)
    try:
        dsn = server.dsn().replace("sslmode=disable", f"sslmode=verify-full sslrootcert={cert}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT 'sealed'").fetchone() == ("sealed",)
            assert conn.pgconn.ssl_in_use
    finally:
        server.stop()


def test_a_server_that_requires_tls_refuses_a_client_before_its_password(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    asked: list[str] = []

    def check(user: str, password: str, source: str) -> bool:
        asked.append(password)
        return password == "s3cret"

    server = Running(tls=context, require_tls=True, authenticate=check)
    try:
        with pytest.raises(psycopg.OperationalError, match="must use TLS"):
            psycopg.connect(server.dsn(password="s3cret"))
        assert asked == []  # the password never crossed the network in the clear
        dsn = server.dsn(password="s3cret").replace(
            "sslmode=disable", f"sslmode=verify-full sslrootcert={cert}"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert asked == ["s3cret"]
    finally:
        server.stop()


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


def test_closing_the_server_closes_idle_connections_and_rolls_back() -> None:
    server = Running()
    try:
        conn = psycopg.connect(server.dsn())
        conn.execute("CREATE TABLE t(a INT PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")  # a transaction left open
    finally:
        server.stop()
    outcome: list[BaseException] = []

    def query() -> None:
        try:
            conn.execute("SELECT 1")
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    asking = threading.Thread(target=query, daemon=True)  # a server that kept it would hang
    asking.start()
    asking.join(30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], psycopg.OperationalError)
    conn.close()
    # rolled back, and the database is free again (else this would wait for its lock)
    with pytest.raises(ProgrammingError, match="no such table: t"):
        server.database.execute("SELECT a FROM t")


@pytest.mark.parametrize(
    "startup",
    [
        struct.pack("!I", 0x7FFFFFF0),  # a 2 GiB startup packet: buffered whole before
        struct.pack("!I", 2),  # shorter than its own length field
        struct.pack("!I", 6) + b"\x00\x03",  # the protocol code cut short
        struct.pack("!II", 14, 0x0003_0000) + b"us\xffr\x00\x00",  # an option not UTF-8
    ],
)
def test_a_malformed_startup_packet_is_refused_and_counted(
    running: Running, startup: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(startup)
        assert sock.recv(1) == b""  # closed at once, no answer to probe
    assert running.server.counts["refused"] == 1
    with psycopg.connect(running.dsn()) as conn:  # and others are served
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_without_a_login_check_is_not_made_by_omission() -> None:
    with pytest.raises(TypeError, match="authenticate"):
        PgServer(Database(MemoryKv()))  # type: ignore[call-arg]


@pytest.mark.parametrize("length", [2, 0x7FFF_FFF0])
def test_a_message_of_impossible_length_after_login_ends_the_session_counted(
    running: Running, length: int
) -> None:
    with _logged_in(running) as sock:
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
    with _logged_in(running) as sock:
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
    message = _message
    parse = message(b"P", b"\x00SELECT $1\x00" + struct.pack("!HI", 1, oid))
    bind = message(
        b"B", b"\x00\x00" + struct.pack("!HHHI", 1, binary, 1, len(raw)) + raw + b"\x00\x00"
    )
    execute = message(b"E", b"\x00" + struct.pack("!I", 0))
    with _logged_in(running) as sock:
        sock.sendall(parse + bind + execute + message(b"S", b""))
        answer = _until_ready(sock)
        assert b"C22P02\x00" in answer, answer
        sock.sendall(message(b"Q", b"SELECT 7\x00"))
        answer = _until_ready(sock)
        assert SEVEN in answer, answer


def test_a_client_that_never_logs_in_is_let_go() -> None:
    server = Running(login_timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as sock:
            assert sock.recv(1) == b""  # closed by the server, not by this test's timeout
        assert server.server.counts["refused"] == 1
    finally:
        server.stop()


def test_a_query_outside_a_block_reads_while_another_session_writes(running: Running) -> None:
    running.database.lock_timeout = 0.2  # a statement that waited for the lock fails fast
    with (
        psycopg.connect(running.dsn()) as writer,
        psycopg.connect(running.dsn(), autocommit=True) as reader,
    ):
        writer.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
        writer.commit()
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


def test_a_session_idle_in_a_write_transaction_is_ended() -> None:
    server = Running(idle_in_transaction_timeout=0.2)
    try:
        with (
            psycopg.connect(server.dsn()) as idle,
            psycopg.connect(server.dsn(), autocommit=True) as other,
        ):
            other.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
            idle.execute("INSERT INTO t VALUES (1)")  # then nothing: it holds the write lock
            # waits (up to lock_timeout, 30 s) for the idle session to be ended and rolled back
            other.execute("INSERT INTO t VALUES (2)")
            assert other.execute("SELECT k FROM t").fetchall() == [(2,)]
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):  # FATAL 25P03
                idle.execute("SELECT 1")
        assert server.server.counts["idle_timeouts"] == 1
    finally:
        server.stop()


def test_a_write_transaction_stalled_mid_message_is_ended_as_an_idle_one() -> None:
    server = Running(idle_in_transaction_timeout=0.2)
    try:
        with _logged_in(server) as sock:
            for sql in (
                b"CREATE TABLE t(k INTEGER PRIMARY KEY)",
                b"BEGIN",
                b"INSERT INTO t VALUES (1)",
            ):
                sock.sendall(_message(b"Q", sql + b"\x00"))
                _until_ready(sock, b"I" if sql.startswith(b"CREATE") else b"T")
            sock.sendall(b"Q\x00\x00")  # a message begun, then nothing: the write lock held
            answer = b""
            while chunk := sock.recv(4096):  # FATAL 25P03, then the session ends
                answer += chunk
            assert b"25P03" in answer
        assert server.server.counts["idle_timeouts"] == 1
        assert server.database.execute("INSERT INTO t VALUES (2)").rowcount == 1  # released
    finally:
        server.stop()


def test_a_block_that_reads_holds_no_write_lock_until_its_first_write(running: Running) -> None:
    running.database.lock_timeout = 0.2  # a statement that waited for the lock fails fast
    busy = psycopg.errors.lookup("57000")
    with (
        psycopg.connect(running.dsn()) as block,  # psycopg sends BEGIN before the first statement
        psycopg.connect(running.dsn(), autocommit=True) as other,
    ):
        other.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
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
    with _logged_in(running) as sock:
        sock.sendall(_message(b"Q", b"SELECT '\xff'\x00"))
        answer = _until_ready(sock)  # idle: outside a block nothing else happens
        assert b"C22021\x00" in answer, answer
        assert bad in answer, answer
        sock.sendall(_message(b"Q", b"BEGIN\x00"))
        _until_ready(sock, b"T")
        sock.sendall(_message(b"Q", b"SELECT '\xc3\x28'\x00"))
        assert b"C22021\x00" in _until_ready(sock, b"E")  # the block has failed
        sock.sendall(_message(b"Q", b"SELECT 7\x00"))
        assert b"C25P02\x00" in _until_ready(sock, b"E")
        sock.sendall(_message(b"Q", b"ROLLBACK\x00"))
        _until_ready(sock)
        # the extended protocol: a Parse not UTF-8 fails, skipped to the Sync
        parse = _message(b"P", b"\x00SELECT '\xff'\x00\x00\x00")
        bind = _message(b"B", b"\x00\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(parse + bind + _message(b"E", b"\x00\x00\x00\x00\x00") + _message(b"S", b""))
        answer = _until_ready(sock)
        assert answer.count(b"C22021\x00") == 1, answer
        # and a text parameter not UTF-8
        parse = _message(b"P", b"\x00SELECT $1\x00" + struct.pack("!HI", 1, 25))
        bind = _message(b"B", b"\x00\x00" + struct.pack("!HHHI", 1, 0, 1, 1) + b"\xff\x00\x00")
        sock.sendall(parse + bind + _message(b"S", b""))
        assert b"C22021\x00" in _until_ready(sock)
        sock.sendall(_message(b"Q", b"SELECT 7\x00"))
        assert SEVEN in _until_ready(sock)
    assert running.server.counts["refused"] == 0
