"""A session's start on the PostgreSQL protocol: logins, TLS, malformed startup packets, the
login timeout and the server's close (pgwire.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meterseal.cascadb import Database, MemoryKv, ProgrammingError
from meterseal.cascadb.pgwire import PgServer
from meterseal.runtime.connections import ConnectionLimits
from tests.cascadb.pg_client import Running


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


def test_the_port_takes_the_runtime_s_connection_limits_by_default() -> None:
    server = Running()
    try:
        assert server.server.limits == ConnectionLimits()  # every server's, 1024 a source
    finally:
        server.stop()


def test_one_source_holds_at_most_its_share_of_connections() -> None:
    # asyncio.start_server took every connection: idle strangers from one address, each kept
    # up to the login timeout, could use up the process's descriptors (the HTTP API's too).
    # A small cap: the runtime's default (1024) would need over 2,048 descriptors in this one
    # process, past a machine's common soft limit of 1,024.
    cap = 8
    server = Running(limits=ConnectionLimits(max_per_source=cap))
    held: list[socket.socket] = []
    try:
        for _ in range(cap):
            held.append(socket.create_connection(("127.0.0.1", server.server.port), timeout=10))
        # Reset at once, nothing read: the reset can reach the client while it still connects.
        with (
            contextlib.suppress(ConnectionResetError),
            socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as over,
        ):
            assert over.recv(1) == b""
        assert server.server.counts["refused_source_full"] == 1
        for sock in held:
            sock.close()
        for _ in range(200):  # the server frees each slot as it sees its connection go
            with contextlib.suppress(psycopg.OperationalError):
                with psycopg.connect(server.dsn(), connect_timeout=10) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("no slot came free")
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_a_client_that_never_logs_in_is_let_go() -> None:
    server = Running(login_timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as sock:
            assert sock.recv(1) == b""  # closed by the server, not by this test's timeout
        assert server.server.counts["refused"] == 1
    finally:
        server.stop()
