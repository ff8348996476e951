"""A PgServer for tests (port 0, in a loop thread), two psycopg sessions of it, and a raw
protocol client's helpers."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import DiagnosticField
from psycopg.pq.abc import PGresult

from meterseal.cascadb import Database, MemoryKv
from meterseal.cascadb.pgwire import UNSAFE_TRUST, PgServer

Outcome = bytes | tuple[str, str] | None  # a first value, or an error's SQLSTATE and message


def outcome(result: PGresult) -> Outcome:
    """A raw result's first value, or its error's SQLSTATE and primary message."""
    if result.error_message:
        state = result.error_field(DiagnosticField.SQLSTATE) or b""
        primary = result.error_field(DiagnosticField.MESSAGE_PRIMARY) or b""
        return state.decode(), primary.decode()
    return result.get_value(0, 0)


SEVEN = b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x017"  # the DataRow of `SELECT 7`


def libpq(url: str) -> str:
    """A SQLAlchemy psycopg URL as the libpq connection string psycopg itself takes."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


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


Session = psycopg.Connection[Any]


@contextmanager
def two_sessions(running: Running, *, autocommit: bool = True) -> Iterator[tuple[Session, Session]]:
    """Two psycopg sessions of `running`, where a statement that waits for the write lock fails
    fast (lock_timeout 0.2 s): the first (`autocommit` False: psycopg sends BEGIN before its
    first statement) and the other (autocommit), which made the table t(k INTEGER PRIMARY
    KEY)."""
    running.database.lock_timeout = 0.2
    with (
        psycopg.connect(running.dsn(), autocommit=autocommit) as first,
        psycopg.connect(running.dsn(), autocommit=True) as other,
    ):
        other.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
        yield first, other


def message(kind: bytes, body: bytes) -> bytes:
    """A protocol message: its kind, its length, its body."""
    return kind + struct.pack("!I", len(body) + 4) + body


def until_ready(sock: socket.socket, status: bytes = b"I") -> bytes:
    """What the server sends up to its ReadyForQuery of `status` (I idle, T block, E failed)."""
    received = b""
    while not received.endswith(b"Z\x00\x00\x00\x05" + status):
        chunk = sock.recv(4096)
        assert chunk, received  # the session goes on
        received += chunk
    return received


@contextmanager
def logged_in(running: Running) -> Iterator[socket.socket]:
    """A raw client's socket, logged in (trust) and past its first ReadyForQuery."""
    options = b"user\x00mdc\x00\x00"
    startup = struct.pack("!II", 8 + len(options), 196608) + options
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(startup)
        until_ready(sock)
        yield sock
