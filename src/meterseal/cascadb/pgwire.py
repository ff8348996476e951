"""The PostgreSQL wire protocol (v3) in front of CascaDB, so psql and psycopg connect unchanged.

Startup (SSL and GSS requests answered 'N' unless a TLS context is given, then TLS), cleartext
password authentication through the `authenticate` callback (required: only `UNSAFE_TRUST`,
for tests, lets a client in without a password; with `require_tls`, a client that did not
start TLS is refused before it sends a password), the simple query protocol (Query: several
statements, each with RowDescription/DataRow/CommandComplete, one transaction when outside a
block) and the extended one (Parse, Bind, Describe, Execute, Close, Sync, Flush; outside a
block, the Executes up to a Sync are one transaction). Sessions are read committed, as
PostgreSQL's default: a transaction, a block too, that begins with a read is a reader holding no
lock until its first write (FOR UPDATE, or an isolation level above read committed asked by
BEGIN or SET, takes the write lock at once). A session holding the write lock
that sends no whole message for `idle_in_transaction_timeout` is ended (FATAL 25P03). Values
travel as text (result format 0; parameters as text or binary for the integer, float and
bytea types).
SQL is read in PostgreSQL's dialect. A portal runs when it is described or executed; column
types are told from the values (int8, float8, numeric, text, bytea, timestamptz, else text).
Each connection is a session; statements run in worker threads (the engine is synchronous).
After an error in a transaction block, ReadyForQuery says 'E' and statements fail with 25P02
until ROLLBACK, as PostgreSQL's; each error carries its SQLSTATE (errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from meterseal.cascadb import errors
from meterseal.cascadb.engine import Database, Result, Session
from meterseal.cascadb.parsing import isolation_set
from meterseal.cascadb.pgtypes import oid_of, parameter, text_of, utf8
from meterseal.cascadb.statement_log import statement_shape

# (user, password, source address) -> allowed; run in a thread (a password hash is slow)
Authenticate = Callable[[str, str, str], bool]


class UnsafeTrust:
    """Let every client in without a password (pg_hba's `trust`): for tests only."""


UNSAFE_TRUST = UnsafeTrust()
SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST, PROTOCOL_3 = 80877103, 80877104, 80877102, 196608
_PROCESS_IDS = itertools.count(1000)
_log = logging.getLogger(__name__)
MAX_PASSWORD = 8192  # bytes of a password message: a login token or API key fits many times
MAX_STARTUP = 10_000  # bytes of a startup packet, PostgreSQL's own MAX_STARTUP_PACKET_LENGTH
MAX_MESSAGE = 64 << 20  # bytes of a message after login: statements and bound values, bounded
# Session commands answered without the engine: SET is accepted and has no effect (CascaDB has
# one date style, time zone UTC) but for an isolation level; DEALLOCATE/DISCARD drop prepared
# statements.
_SESSION_COMMANDS = {"SET", "DEALLOCATE", "DISCARD"}


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def _cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def _tag(result: Result) -> str:
    if result.command == "SELECT":
        return f"SELECT {len(result.rows)}"
    if result.command == "INSERT":
        return f"INSERT 0 {result.rowcount}"
    if result.command in ("UPDATE", "DELETE"):
        return f"{result.command} {result.rowcount}"
    return result.command or "OK"


@dataclass
class _Prepared:
    statement: exp.Expression | None
    types: list[int]


@dataclass
class _Portal:
    prepared: _Prepared
    params: list[Any]
    result: Result | None = None


@dataclass
class _Connection:
    session: Session
    user: str
    prepared: dict[str, _Prepared] = field(default_factory=dict)
    portals: dict[str, _Portal] = field(default_factory=dict)
    failed: bool = False  # an extended-protocol error: skip to Sync
    implicit: bool = False  # executes outside a block: one transaction until Sync


class PgServer:
    """Serves one Database over the PostgreSQL protocol; `start()` binds, `port` tells where."""

    def __init__(
        self,
        database: Database,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        authenticate: Authenticate | UnsafeTrust,
        tls: ssl.SSLContext | None = None,
        require_tls: bool = False,
        log: Callable[[str], None] | None = None,
        login_timeout: float = 60.0,
        idle_in_transaction_timeout: float | None = 60.0,
    ) -> None:
        if require_tls and tls is None:
            raise ValueError("require_tls needs a TLS context")
        self.database = database
        self.host, self.port = host, port
        self.authenticate = authenticate
        self.tls = tls
        self.require_tls = require_tls
        self.login_timeout = login_timeout  # PostgreSQL's authentication_timeout: a minute
        # PostgreSQL's idle_in_transaction_session_timeout (None: no limit): a client that holds
        # the one write lock and sends nothing would stall every other writer
        self.idle_in_transaction_timeout = idle_in_transaction_timeout
        # sessions, refused (logins and plain connections), statements, failed (statements)
        self.counts: Counter[str] = Counter()
        self.log = log or (lambda line: None)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # open connections, closed by close()

    async def start(self) -> None:
        """Listen (port 0: any free port, then `self.port` is it)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close the connections (an open transaction is rolled back)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # an idle client must not hold the stop up
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn: _Connection | None = None
        self._writers.add(writer)
        try:
            try:
                async with asyncio.timeout(self.login_timeout):  # no idle stranger kept for ever
                    conn = await self._startup(reader, writer)
            except TimeoutError:
                self.counts["refused"] += 1
                return
            if conn is not None:
                await self._loop(conn, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (UnicodeDecodeError, ValueError, struct.error) as exc:
            # A message that does not parse (a name without its NUL, fields cut short): one
            # opaque protocol error, as PostgreSQL's, and the session ends.
            self.counts["refused"] += 1
            _log.info("a PostgreSQL protocol message refused: %s: %s", type(exc).__name__, exc)
            writer.write(self._error("08P01", "invalid message"))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            if conn is not None:
                conn.session.close()  # rolls back in memory: quick, and safe at interpreter exit
            self._writers.discard(writer)
            writer.close()

    async def _startup(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Connection | None:
        secure = False
        while True:
            length = struct.unpack("!I", await reader.readexactly(4))[0]
            if not 8 <= length <= MAX_STARTUP:  # before any login: never buffer what it says
                self.counts["refused"] += 1
                return None
            body = await reader.readexactly(length - 4)
            code = struct.unpack("!I", body[:4])[0]
            if code in (SSL_REQUEST, GSS_REQUEST):
                if code == SSL_REQUEST and self.tls is not None:
                    writer.write(b"S")
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    secure = True
                else:
                    writer.write(b"N")
                    await writer.drain()
                continue
            if code != PROTOCOL_3:
                return None  # cancel requests and old protocols: nothing to do
            items = body[4:].split(b"\x00")
            try:
                options = {
                    k.decode(): v.decode()
                    for k, v in zip(items[::2], items[1::2], strict=False)
                    if k
                }
            except UnicodeDecodeError:
                self.counts["refused"] += 1
                return None
            if self.require_tls and not secure:
                # as pg_hba's hostssl: no password crosses the network in the clear
                self.counts["refused"] += 1
                writer.write(self._error("28000", "connections must use TLS (sslmode=require)"))
                await writer.drain()
                return None
            return await self._authenticated(options.get("user", ""), reader, writer)

    async def _authenticated(
        self, user: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Connection | None:
        if not isinstance(self.authenticate, UnsafeTrust):
            writer.write(_message(b"R", struct.pack("!I", 3)))
            await writer.drain()
            kind = await reader.readexactly(1)
            length = struct.unpack("!I", await reader.readexactly(4))[0]
            if not 4 <= length <= MAX_PASSWORD:
                return None
            password = (await reader.readexactly(length - 4)).rstrip(b"\x00")
            peer = writer.get_extra_info("peername")
            source = str(peer[0]) if isinstance(peer, tuple) else "unknown"
            allowed = kind == b"p" and await asyncio.to_thread(
                self.authenticate, user, password.decode(errors="replace"), source
            )
            if not allowed:  # one answer whatever failed: name, password, role, back-off
                self.counts["refused"] += 1
                writer.write(self._error("28P01", f"password authentication failed for {user}"))
                await writer.drain()
                return None
        parameters = {
            "server_version": "14.0 (CascaDB)",
            "server_encoding": "UTF8",
            "client_encoding": "UTF8",
            "DateStyle": "ISO, MDY",
            "TimeZone": "UTC",
            "integer_datetimes": "on",
            "standard_conforming_strings": "on",
        }
        out = _message(b"R", struct.pack("!I", 0))
        for name, value in parameters.items():
            out += _message(b"S", _cstr(name) + _cstr(value))
        out += _message(b"K", struct.pack("!II", next(_PROCESS_IDS), 0))
        self.log(f"{user}: session")
        self.counts["sessions"] += 1
        # PostgreSQL's default isolation: a transaction that begins with a read is a reader
        session = self.database.session(autocommit=True, dialect="postgres", read_committed=True)
        writer.write(out + self._ready(session))
        await writer.drain()
        return _Connection(session, user)

    def _ready(self, session: Session) -> bytes:
        # 'E': a statement failed in the transaction block, which now takes only ROLLBACK
        status = b"E" if session.failed else b"T" if session.in_transaction else b"I"
        return _message(b"Z", status)

    def _error(self, code: str, text: str, severity: str = "ERROR") -> bytes:
        level = severity.encode()
        fields = b"S" + _cstr(severity) + b"V" + level + b"\x00C" + _cstr(code)
        return _message(b"E", fields + b"M" + _cstr(text) + b"\x00")

    def _failure(self, conn: _Connection, exc: errors.Error) -> bytes:
        self.counts["failed"] += 1
        conn.session.abort()  # a statement that failed before it ran (its parse) aborts too
        return self._error(exc.sqlstate, str(exc))

    async def _loop(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            idle = self.idle_in_transaction_timeout if conn.session.writing else None
            try:  # the whole message, as PostgreSQL's: one begun and left unfinished holds too
                async with asyncio.timeout(idle):
                    kind, head = await reader.readexactly(1), await reader.readexactly(4)
                    length = struct.unpack("!I", head)[0]
                    if not 4 <= length <= MAX_MESSAGE:  # nothing after it parses: end it
                        self.counts["refused"] += 1
                        return
                    body = await reader.readexactly(length - 4)
            except TimeoutError:  # the caller's finally rolls back, releasing the lock
                self.counts["idle_timeouts"] += 1
                _log.info("%s: session ended idle in a write transaction", conn.user)
                message = "terminating connection due to idle-in-transaction timeout"
                writer.write(self._error("25P03", message, "FATAL"))
                await writer.drain()
                return
            if kind == b"X":
                return
            out = await self._handle(conn, kind, body)
            if out:
                writer.write(out)
                await writer.drain()

    async def _handle(self, conn: _Connection, kind: bytes, body: bytes) -> bytes:
        if kind == b"Q":
            try:  # a query not UTF-8 fails as a statement does (22021); the session goes on
                sql = utf8(body.rstrip(b"\x00"))
            except errors.Error as exc:
                return self._failure(conn, exc) + self._ready(conn.session)
            return await self._simple(conn, sql)
        if kind == b"S":
            conn.failed = False
            if conn.implicit:  # as PostgreSQL: Sync ends the implicit transaction
                conn.implicit = False
                session = conn.session
                try:
                    await asyncio.to_thread(session.rollback if session.failed else session.commit)
                except errors.Error as exc:
                    return self._failure(conn, exc) + self._ready(session)
            return self._ready(conn.session)
        if kind == b"H":
            return b""
        if conn.failed:
            return b""
        try:
            return await self._extended(conn, kind, body)
        except errors.Error as exc:
            conn.failed = True
            return self._failure(conn, exc)

    async def _simple(self, conn: _Connection, sql: str) -> bytes:
        out = b""
        words = sql.strip().rstrip(";").split()
        if words and words[0].upper() in _SESSION_COMMANDS and not conn.session.failed:
            if words[0].upper() == "DEALLOCATE" and len(words) > 1:
                conn.prepared.pop(words[-1].strip('"'), None)
            if words[0].upper() == "DISCARD":
                conn.prepared.clear()
            tag = _cstr(
                " ".join(words[:2]).upper() if words[0].upper() == "DISCARD" else words[0].upper()
            )
            try:
                await self._isolation(conn.session, sql)
            except errors.Error as exc:
                return self._failure(conn, exc) + self._ready(conn.session)
            return _message(b"C", tag) + self._ready(conn.session)
        session, implicit = conn.session, False
        try:
            statements = session.statements(sql)
            if not statements:
                out += _message(b"I")
            # As PostgreSQL: several statements outside a block are one transaction.
            implicit = len(statements) > 1 and not session.in_transaction
            implicit = implicit and not any(map(_controls_transaction, statements))
            session.read_ahead(statements)  # one that begins reading: no write lock yet
            if implicit:
                await asyncio.to_thread(session.begin)
            for statement in statements:
                self.log(f"{conn.user}: {statement_shape(statement, 'postgres')}")
                self.counts["statements"] += 1
                result = await asyncio.to_thread(session.run_statement, statement, [])
                out += self._description(result) + self._rows(result)
            if implicit:
                await asyncio.to_thread(session.commit)
        except errors.Error as exc:
            out += self._failure(conn, exc)
            if implicit:
                session.rollback()
        return out + self._ready(session)

    async def _isolation(self, session: Session, sql: str) -> None:
        # REPEATABLE READ or SERIALIZABLE asked: what a transaction reads stays as read, so it
        # holds the write lock from its first statement (from the SET, for the open one)
        asked = isolation_set(sql)
        if asked is None:
            return
        session_wide, serial = asked
        if session_wide:
            session.read_committed = not serial
        elif serial and session.in_transaction:
            await asyncio.to_thread(session.serialize)

    def _description(self, result: Result) -> bytes:
        if result.columns is None:
            return b""
        payload = struct.pack("!H", len(result.columns))
        for i, name in enumerate(result.columns):
            oid = oid_of([row[i] for row in result.rows])
            payload += _cstr(name) + struct.pack("!IhIhih", 0, 0, oid, -1, -1, 0)
        return _message(b"T", payload)

    def _rows(self, result: Result) -> bytes:
        out = bytearray()
        for row in result.rows:
            payload = bytearray(struct.pack("!H", len(row)))
            for value in row:
                if value is None:
                    payload += struct.pack("!i", -1)
                else:
                    text = text_of(value)
                    payload += struct.pack("!I", len(text)) + text
            out += _message(b"D", bytes(payload))
        return bytes(out) + _message(b"C", _cstr(_tag(result)))

    async def _extended(self, conn: _Connection, kind: bytes, body: bytes) -> bytes:
        if kind == b"P":
            name, rest = _split(body)
            sql, rest = _split(rest)
            count = struct.unpack("!H", rest[:2])[0]
            types = list(struct.unpack(f"!{count}I", rest[2 : 2 + 4 * count]))
            statements = conn.session.statements(sql)
            if len(statements) > 1:
                raise errors.ProgrammingError("a prepared statement holds one statement")
            conn.prepared[name] = _Prepared(statements[0] if statements else None, types)
            return _message(b"1")
        if kind == b"B":
            return self._bind(conn, body)
        if kind == b"D":
            target, name = body[:1], _split(body[1:])[0]
            if target == b"S":
                prepared = conn.prepared.get(name)
                if prepared is None:
                    raise errors.ProgrammingError(f"no prepared statement {name!r}")
                return self._describe_statement(prepared)
            portal = await self._run(conn, name)
            described = self._description(portal)
            return described or _message(b"n")
        if kind == b"E":
            name = _split(body)[0]
            result = await self._run(conn, name)
            if result.columns is None and not result.command:
                return _message(b"I")
            return (
                self._rows(result)
                if result.columns is not None
                else _message(b"C", _cstr(_tag(result)))
            )
        if kind == b"C":
            target, name = body[:1], _split(body[1:])[0]
            (conn.prepared if target == b"S" else conn.portals).pop(name, None)
            return _message(b"3")
        raise errors.InterfaceError(f"unknown message {kind!r}")

    def _bind(self, conn: _Connection, body: bytes) -> bytes:
        portal, rest = _split(body)
        name, rest = _split(rest)
        prepared = conn.prepared.get(name)
        if prepared is None:
            raise errors.ProgrammingError(f"no prepared statement {name!r}")
        count = struct.unpack("!H", rest[:2])[0]
        formats = list(struct.unpack(f"!{count}h", rest[2 : 2 + 2 * count]))
        rest = rest[2 + 2 * count :]
        total = struct.unpack("!H", rest[:2])[0]
        rest = rest[2:]
        params = []
        for i in range(total):
            size = struct.unpack("!i", rest[:4])[0]
            raw = None if size < 0 else rest[4 : 4 + size]
            rest = rest[4 + max(size, 0) :]
            binary = (formats[i] if len(formats) > 1 else formats[0] if formats else 0) == 1
            oid = prepared.types[i] if i < len(prepared.types) else 0
            params.append(parameter(raw, oid, binary))
        conn.portals[portal] = _Portal(prepared, params)
        return _message(b"2")

    def _describe_statement(self, prepared: _Prepared) -> bytes:
        oids = prepared.types
        return _message(b"t", struct.pack(f"!H{len(oids)}I", len(oids), *oids)) + _message(b"n")

    async def _run(self, conn: _Connection, name: str) -> Result:
        portal = conn.portals.get(name)
        if portal is None:
            raise errors.ProgrammingError(f"no portal {name!r}")
        if portal.result is None:
            statement = portal.prepared.statement
            if statement is None:
                portal.result = Result()
            else:
                self.log(f"{conn.user}: {statement_shape(statement, 'postgres')}")
                self.counts["statements"] += 1
                if _controls_transaction(statement):
                    conn.implicit = False  # BEGIN makes it a block; COMMIT/ROLLBACK end it
                elif not conn.session.in_transaction:
                    conn.session.read_ahead([statement])  # a reader until its first write
                    await asyncio.to_thread(conn.session.begin)
                    conn.implicit = True
                run = conn.session.run_statement
                portal.result = await asyncio.to_thread(run, statement, portal.params)
        return portal.result


def _controls_transaction(node: exp.Expression) -> bool:
    if isinstance(node, exp.Transaction | exp.Commit | exp.Rollback):
        return True
    return isinstance(node, exp.Command) and str(node.this).upper() in ("SAVEPOINT", "RELEASE")


def _split(data: bytes) -> tuple[str, bytes]:
    end = data.index(b"\x00")
    return utf8(data[:end]), data[end + 1 :]
