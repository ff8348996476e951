"""A PostgreSQL session after login (pgwire.py starts it): the query loop.

The simple query protocol (Query: several statements, each with RowDescription/DataRow/
CommandComplete, one transaction when outside a block) and the extended one (Parse, Bind,
Describe, Execute, Close, Sync, Flush; outside a block, the Executes up to a Sync are one
transaction). A portal runs when it is described or executed; a column's type is bool for a
Boolean expression (result_types.py), else told from the values (int8, float8, numeric, bytea,
timestamptz, else text). Statements run in worker threads (the engine is synchronous); a
session ends after its running statement. After an error in a transaction block, ReadyForQuery
says 'E' and statements fail with 25P02 until ROLLBACK, as PostgreSQL's; each error carries its
SQLSTATE (errors.py). A session idle inside a transaction block, or holding the write lock,
that sends no whole message, or reads none of an answer, for `idle_in_transaction_timeout` is
ended (FATAL 25P03).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlglot import exp

from meterseal.cascadb import errors, pg_settings
from meterseal.cascadb.engine import Result, Session
from meterseal.cascadb.parsing import (
    SERIAL_LEVELS,
    controls_transaction,
    deallocated,
    outside_block_refused,
    session_command,
    transaction_set,
)
from meterseal.cascadb.pgtypes import column_types, parameter, text_of, utf8
from meterseal.cascadb.statement_log import statement_shape

_log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_MESSAGE = 64 << 20  # bytes of a message after login: statements and bound values, bounded


def message(kind: bytes, payload: bytes = b"") -> bytes:
    """A protocol message: its kind, its length, its payload."""
    return kind + struct.pack("!I", len(payload) + 4) + payload


def cstr(text: str) -> bytes:
    """`text` as a protocol string (UTF-8, NUL-terminated)."""
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
class Connection:
    """A logged-in client: its session, prepared statements and portals."""

    session: Session
    user: str
    prepared: dict[str, _Prepared] = field(default_factory=dict)
    portals: dict[str, _Portal] = field(default_factory=dict)
    failed: bool = False  # an extended-protocol error: skip to Sync
    implicit: bool = False  # executes outside a block: one transaction until Sync
    reported_read_only: bool = False  # default_transaction_read_only as last reported
    running: asyncio.Future[Any] | None = None  # the session's call in a worker thread, if any

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` of the session in a worker thread (the engine is synchronous), as
        asyncio.to_thread's. A cancelled caller leaves it running: `settled` waits for it."""
        loop = asyncio.get_running_loop()
        work = functools.partial(contextvars.copy_context().run, function, *args)
        # The executor's future, not a task: the loop's end, which cancels every task, leaves
        # it to tell when the thread is done
        self.running = loop.run_in_executor(None, work)
        result: T = await asyncio.shield(self.running)
        return result

    async def settled(self) -> None:
        """Wait for the session's call still running in a worker thread, if any, however often
        cancelled meanwhile (then CancelledError after it). A Session is one thread's at a time:
        ended under a running statement, its rollback would release the write lock while the
        statement writes, and the statement's own end release it again (another session's)."""
        running, cancelled = self.running, False
        while running is not None and not running.done():
            try:
                await asyncio.wait({running})
            except asyncio.CancelledError:
                cancelled = True
        if running is not None and not running.cancelled():
            running.exception()  # its caller was cancelled: nobody else will read it
        if cancelled:
            raise asyncio.CancelledError


def error(code: str, text: str, severity: str = "ERROR") -> bytes:
    """An ErrorResponse: its severity, SQLSTATE `code` and message."""
    level = severity.encode()
    fields = b"S" + cstr(severity) + b"V" + level + b"\x00C" + cstr(code)
    return message(b"E", fields + b"M" + cstr(text) + b"\x00")


def ready(session: Session) -> bytes:
    """ReadyForQuery with the session's transaction status."""
    # 'E': a statement failed in the transaction block, which now takes only ROLLBACK
    status = b"E" if session.failed else b"T" if session.in_transaction else b"I"
    return message(b"Z", status)


class QueryLoop:
    """The query loop of PgServer's sessions (its counts, log and idle limit)."""

    counts: Counter[str]
    log: Callable[[str], None]
    idle_in_transaction_timeout: float | None

    def _failure(self, conn: Connection, exc: errors.Error) -> bytes:
        self.counts["failed"] += 1
        conn.session.abort()  # a statement that failed before it ran (its parse) aborts too
        return error(exc.sqlstate, str(exc))

    async def serve_queries(
        self, conn: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer `conn`'s messages until it ends (Terminate, a refused message, idle limit)."""
        while True:
            # As PostgreSQL's idle_in_transaction_session_timeout: a session idle inside a
            # transaction block, failed or not, is ended even holding no lock (its portals keep
            # their rows); and, CascaDB's own, one holding the write lock between Executes
            # without a Sync, which would stall every other writer
            idle = self._idle_limit(conn)
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
                _log.info("%s: session ended idle in a transaction", conn.user)
                text = "terminating connection due to idle-in-transaction timeout"
                writer.write(error("25P03", text, "FATAL"))
                await writer.drain()
                return
            if kind == b"X":
                return
            out = await self._handle(conn, kind, body)
            if kind in (b"Q", b"S"):
                out = _report(conn, out)
            if out:
                writer.write(out)
                if not await self._drained(conn, writer):
                    return

    def _idle_limit(self, conn: Connection) -> float | None:
        session = conn.session
        limited = (session.in_transaction and not conn.implicit) or session.writing
        return self.idle_in_transaction_timeout if limited else None

    async def _drained(self, conn: Connection, writer: asyncio.StreamWriter) -> bool:
        """Whether the client took the answer written; CascaDB's own, a session under the idle
        limit whose client reads none of it for that long is ended, as an idle one is: it would
        hold its transaction, and the write lock with it, for as long as it does not read."""
        idle = self._idle_limit(conn)
        while True:
            left = writer.transport.get_write_buffer_size()
            try:
                async with asyncio.timeout(idle):
                    await writer.drain()
                return True
            except TimeoutError:
                if writer.transport.get_write_buffer_size() < left:
                    continue  # it reads, slowly: not idle
            self.counts["idle_timeouts"] += 1
            _log.info("%s: session ended reading no answer in a transaction", conn.user)
            writer.transport.abort()  # what is unsent would keep the socket open until read
            return False  # the caller's finally rolls back, releasing the lock

    async def _handle(self, conn: Connection, kind: bytes, body: bytes) -> bytes:
        if kind == b"Q":
            try:  # a query not UTF-8 fails as a statement does (22021); the session goes on
                sql = utf8(body.rstrip(b"\x00"))
            except errors.Error as exc:
                return self._failure(conn, exc) + ready(conn.session)
            return await self._simple(conn, sql)
        if kind == b"S":
            conn.failed = False
            if conn.implicit:  # as PostgreSQL: Sync ends the implicit transaction
                conn.implicit = False
                session = conn.session
                try:
                    await conn.call(session.rollback if session.failed else session.commit)
                except errors.Error as exc:
                    return self._failure(conn, exc) + ready(session)
            return ready(conn.session)
        if kind == b"H":
            return b""
        if conn.failed:
            return b""
        try:
            return await self._extended(conn, kind, body)
        except errors.Error as exc:
            conn.failed = True
            return self._failure(conn, exc)

    async def _simple(self, conn: Connection, sql: str) -> bytes:
        out = b""
        session, implicit = conn.session, False
        try:
            statements = session.statements(sql)  # all parsed before any runs, as PostgreSQL's
            if not statements:
                out += message(b"I")
            # As PostgreSQL: several statements outside a block are one transaction, which a
            # BEGIN among them makes a block (the statements before it are in it) and a COMMIT
            # or ROLLBACK ends (the statements after it are the next one).
            several = len(statements) > 1
            if not several and any(session_command(s) is None for s in statements):
                # (read ahead only for a transaction that begins: a session command begins none)
                session.read_ahead(statements)  # one that begins reading: no write lock yet
            for at, statement in enumerate(statements):
                if several and not session.in_transaction and not controls_transaction(statement):
                    session.read_ahead(_ahead(session, statements[at:]))
                    await conn.call(session.begin)
                    implicit = True
                self.log(f"{conn.user}: {statement_shape(statement, 'postgres')}")
                self.counts["statements"] += 1
                text = session_command(statement)
                if text is None:
                    outside_block_refused(statement, session.in_transaction and not implicit)
                    result = await conn.call(session.run_statement, statement, [])
                    implicit = implicit and not controls_transaction(statement)
                else:
                    result = await self._session_command(conn, text)
                out += self._description(result) + self._rows(result)
            if implicit:
                await conn.call(session.commit)
        except errors.Error as exc:  # the statements after it do not run
            out += self._failure(conn, exc)
            if implicit or not session.in_transaction:
                # (none open: how the next would begin, read ahead for these, is forgotten)
                session.rollback()
        return out + ready(session)

    async def _session_command(self, conn: Connection, text: str) -> Result:
        """SET, RESET, DEALLOCATE, DISCARD or SHOW (parsing.session_command), as PostgreSQL
        answers them: SET and RESET have no effect (CascaDB has one date style, time zone UTC)
        but for transaction modes, and refuse a name CascaDB does not know (pg_settings.py);
        DEALLOCATE and DISCARD ALL drop prepared statements (DISCARD ALL RESETs ALL too); SHOW
        tells the modes and the settings CascaDB has."""
        session = conn.session
        if session.failed:
            raise errors.TransactionAborted(
                "current transaction is aborted, commands ignored until end of transaction block"
            )
        words = text.rstrip(";").split()
        verb, rest = words[0].upper(), [w.upper() for w in words[1:]]
        if verb in ("SET", "RESET"):
            if verb == "RESET":  # of a name CascaDB knows (its transaction modes' too)
                pg_settings.set_command(text)
            if not await self._isolation(conn, text):
                pg_settings.set_command(text)  # known to change nothing CascaDB does, or refused
            return Result(command=verb)
        if verb == "SHOW":
            return pg_settings.show(session, " ".join(rest))
        if verb == "DEALLOCATE":
            name = deallocated(text)
            if name is None:
                conn.prepared.clear()
                return Result(command="DEALLOCATE ALL")
            _prepared(conn, name)
            del conn.prepared[name]
            return Result(command="DEALLOCATE")
        kind = {"TEMPORARY": "TEMP"}.get(" ".join(rest), " ".join(rest))
        if kind not in ("ALL", "PLANS", "SEQUENCES", "TEMP"):
            raise errors.ProgrammingError(f"syntax error: {text!r}")
        if kind == "ALL":
            if session.in_transaction:  # an implicit block of several statements too
                raise errors.ActiveSqlTransaction(
                    "DISCARD ALL cannot run inside a transaction block"
                )
            conn.prepared.clear()  # DISCARD PLANS keeps the statements, replanned (none kept)
            session.defaults.reset(("isolation", "read_only"), in_transaction=False)  # RESET ALL
        return Result(command=f"DISCARD {kind}")

    async def _isolation(self, conn: Connection, sql: str) -> bool:
        # A SET or RESET of transaction modes (whether it is one): for the session, the default
        # modes of its next transactions (each of a level above read committed holds the write
        # lock from its first statement; READ ONLY until a BEGIN READ WRITE); for the open
        # transaction, PostgreSQL's rules (Session.set_transaction)
        asked = transaction_set(sql)
        if asked is None:
            return False
        session = conn.session
        session_wide, modes, local = asked
        if session_wide:
            changes = {"isolation": modes.level, "read_only": modes.read_only}
            asked_for = {name: value for name, value in changes.items() if value is not None}
            in_transaction = session.in_transaction
            session.defaults.set(in_transaction=in_transaction, local=local, **asked_for)
            session.defaults.reset(modes.reset, in_transaction=in_transaction, local=local)
        else:
            await conn.call(session.set_transaction, modes)
        return True

    def _description(self, result: Result) -> bytes:
        if result.columns is None:
            return b""
        payload = struct.pack("!H", len(result.columns))
        hints = result.types or [None] * len(result.columns)
        for name, oid in zip(result.columns, column_types(hints, result.rows), strict=True):
            payload += cstr(name) + struct.pack("!IhIhih", 0, 0, oid, -1, -1, 0)
        return message(b"T", payload)

    def _rows(self, result: Result) -> bytes:
        out = bytearray()
        hints = result.types or [None] * len(result.columns or ())  # (told ones: text_of's own)
        for row in result.rows:
            payload = bytearray(struct.pack("!H", len(row)))
            for value, oid in zip(row, hints, strict=True):
                if value is None:
                    payload += struct.pack("!i", -1)
                else:
                    text = text_of(value, oid)
                    payload += struct.pack("!I", len(text)) + text
            out += message(b"D", bytes(payload))
        return bytes(out) + message(b"C", cstr(_tag(result)))

    async def _extended(self, conn: Connection, kind: bytes, body: bytes) -> bytes:
        if kind == b"P":
            name, rest = _split(body)
            sql, rest = _split(rest)
            count = struct.unpack("!H", rest[:2])[0]
            types = list(struct.unpack(f"!{count}I", rest[2 : 2 + 4 * count]))
            statements = conn.session.statements(sql)
            if len(statements) > 1:
                raise errors.ProgrammingError("a prepared statement holds one statement")
            conn.prepared[name] = _Prepared(statements[0] if statements else None, types)
            return message(b"1")
        if kind == b"B":
            return self._bind(conn, body)
        if kind == b"D":
            target, name = body[:1], _split(body[1:])[0]
            if target == b"S":
                return self._describe_statement(_prepared(conn, name))
            portal = await self._run(conn, name)
            described = self._description(portal)
            return described or message(b"n")
        if kind == b"E":
            name = _split(body)[0]
            result = await self._run(conn, name)
            if result.columns is None and not result.command:
                return message(b"I")
            return (
                self._rows(result)
                if result.columns is not None
                else message(b"C", cstr(_tag(result)))
            )
        if kind == b"C":
            target, name = body[:1], _split(body[1:])[0]
            (conn.prepared if target == b"S" else conn.portals).pop(name, None)
            return message(b"3")
        raise errors.InterfaceError(f"unknown message {kind!r}")

    def _bind(self, conn: Connection, body: bytes) -> bytes:
        portal, rest = _split(body)
        name, rest = _split(rest)
        prepared = _prepared(conn, name)
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
        return message(b"2")

    def _describe_statement(self, prepared: _Prepared) -> bytes:
        oids = prepared.types
        return message(b"t", struct.pack(f"!H{len(oids)}I", len(oids), *oids)) + message(b"n")

    async def _run(self, conn: Connection, name: str) -> Result:
        portal = conn.portals.get(name)
        if portal is None:
            raise errors.InvalidCursorName(f'portal "{name}" does not exist')
        if portal.result is None:
            statement = portal.prepared.statement
            if statement is None:
                portal.result = Result()
            else:
                self.log(f"{conn.user}: {statement_shape(statement, 'postgres')}")
                self.counts["statements"] += 1
                text = session_command(statement)
                session = conn.session
                if text is not None:
                    # As PostgreSQL's, a SET begins the transaction the Executes up to the Sync
                    # share (a reader): what it changes is undone if that fails, and the
                    # default modes it sets are the next transaction's
                    verb = text.split(None, 1)[0].upper()
                    if verb in ("SET", "RESET") and not session.in_transaction:
                        session.read_ahead([statement])  # (a reader at any level)
                        await conn.call(session.begin)
                        conn.implicit = True
                    portal.result = await self._session_command(conn, text)
                    return portal.result
                if controls_transaction(statement):
                    session = conn.session
                    outside_block_refused(statement, session.in_transaction and not conn.implicit)
                    conn.implicit = False  # BEGIN makes it a block; COMMIT/ROLLBACK end it
                elif conn.implicit and session.isolation in SERIAL_LEVELS and not session.writing:
                    await conn.call(session.serialize)  # begun by a SET: the lock now, as below
                elif not conn.session.in_transaction:
                    # read committed: a reader until its first write; above it, the Executes
                    # to come before the Sync may write what this one read: the write lock now
                    if conn.session.read_committed:
                        conn.session.read_ahead([statement])
                    await conn.call(conn.session.begin)
                    conn.implicit = True
                run = conn.session.run_statement
                portal.result = await conn.call(run, statement, portal.params)
        return portal.result


def _report(conn: Connection, out: bytes) -> bytes:
    """`out`, ending with ReadyForQuery, with a ParameterStatus before it if the session's
    default_transaction_read_only changed (as PostgreSQL reports it, libpq's
    target_session_attrs reads it)."""
    read_only = conn.session.defaults.now.read_only
    if read_only == conn.reported_read_only:
        return out
    conn.reported_read_only = read_only
    status = cstr("default_transaction_read_only") + cstr("on" if read_only else "off")
    return out[:-6] + message(b"S", status) + out[-6:]


def _prepared(conn: Connection, name: str) -> _Prepared:
    prepared = conn.prepared.get(name)
    if prepared is None:
        named = f'prepared statement "{name}"' if name else "unnamed prepared statement"
        raise errors.InvalidSqlStatementName(f"{named} does not exist")
    return prepared


def _ahead(session: Session, statements: list[exp.Expression]) -> list[exp.Expression]:
    """What decides whether an implicit transaction begins reading (no write lock yet): in a
    read committed session, BEGIN aside (a block begins a reader; a level above takes the lock
    at the BEGIN, as SET TRANSACTION's does)."""
    if not session.read_committed:
        return statements
    return [s for s in statements if not isinstance(s, exp.Transaction)]


def _split(data: bytes) -> tuple[str, bytes]:
    end = data.index(b"\x00")
    return utf8(data[:end]), data[end + 1 :]
