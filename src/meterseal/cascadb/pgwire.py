"""The PostgreSQL wire protocol (v3) in front of CascaDB, so psql and psycopg connect unchanged.

This module starts a session: startup (SSL and GSS requests answered 'N' unless a TLS context
is given, then TLS), cleartext password authentication through the `authenticate` callback
(required: only `UNSAFE_TRUST`, for tests, lets a client in without a password; with
`require_tls`, a client that did not start TLS is refused before it sends a password), then
the startup packet's run-time parameters (pg_startup.py: `options` and other keys, as
PostgreSQL's session defaults; one it does not know ends the session, FATAL 42704), then the
query loop (pgwire_queries.py). SQL is read in PostgreSQL's dialect. Sessions are read
committed, as PostgreSQL's default: a transaction, a block too, that begins with a read is a
reader holding no lock until its first write (FOR UPDATE, or an isolation level above read
committed asked by BEGIN, START TRANSACTION or SET, takes the write lock at once). Values
travel as text (result format 0; parameters as text or binary for the integer, float and
bytea types). Each connection is a session. Connections are capped per source and in all as
every server's are (`runtime.connections.ConnectionLimits`): one over a cap is reset at once.
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

from meterseal.cascadb import errors, pg_settings
from meterseal.cascadb.engine import Database
from meterseal.cascadb.pg_startup import read_startup
from meterseal.cascadb.pgwire_queries import Connection, QueryLoop, cstr, error, message, ready
from meterseal.cascadb.scope import Client
from meterseal.runtime.connections import ConnectionLimits, RefusalLog, reset_on_close, source_key

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


class PgServer(QueryLoop):
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
        limits: ConnectionLimits | None = None,
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
        # Connections per source and in all, as every server's (runtime.connections): one
        # source's idle strangers, each kept up to login_timeout, must not starve the others.
        self.limits = limits or ConnectionLimits()
        self._gate = self.limits.gate(self.counts)
        self._refusals: RefusalLog | None = None
        self.log = log or (lambda line: None)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # open connections, closed by close()
        self._sessions: set[asyncio.Task[None]] = set()  # their tasks, awaited by close()

    async def start(self) -> None:
        """Listen (port 0: any free port, then `self.port` is it)."""
        self._refusals = RefusalLog("cascadb-pg", self.limits.refusal_log_interval)
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close the connections: each session ends once its running
        statement, if any, has (an open transaction is rolled back)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # an idle client must not hold the stop up
                writer.close()
            await self._server.wait_closed()
            # (Python 3.11's wait_closed does not wait for them: the store under the database
            # would be closed under a statement still running, which would commit after it)
            await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._refusals is not None:
            self._refusals.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = source_key(peer[0]) if isinstance(peer, tuple) else "local"
        refusal = self._gate.admit(source)  # counted: refused_source_full, refused_server_full
        if refusal is not None:  # reset at once, nothing read
            if self._refusals is not None:
                self._refusals.note(refusal, source)
            reset_on_close(writer.get_extra_info("socket"))
            writer.transport.abort()
            return
        try:
            await self._session(reader, writer)
        finally:
            self._gate.release(source)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn: Connection | None = None
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            try:
                async with asyncio.timeout(self.login_timeout):  # no idle stranger kept for ever
                    conn = await self._startup(reader, writer)
            except TimeoutError:
                self.counts["refused"] += 1
                return
            if conn is not None:
                await self.serve_queries(conn, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (UnicodeDecodeError, ValueError, struct.error) as exc:
            # A message that does not parse (a name without its NUL, fields cut short): one
            # opaque protocol error, as PostgreSQL's, and the session ends.
            self.counts["refused"] += 1
            _log.info("a PostgreSQL protocol message refused: %s: %s", type(exc).__name__, exc)
            writer.write(error("08P01", "invalid message"))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            try:
                if conn is not None:
                    # cancelled (the event loop's end) under a statement running in its worker
                    # thread: the session is that thread's until the statement ends
                    await conn.settled()
            finally:
                if conn is not None:
                    conn.session.close()  # rolls back in memory: quick, safe at interpreter exit
                self._writers.discard(writer)
                writer.close()
                if task is not None:
                    self._sessions.discard(task)

    async def _startup(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Connection | None:
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
                writer.write(error("28000", "connections must use TLS (sslmode=require)"))
                await writer.drain()
                return None
            return await self._authenticated(options, reader, writer)

    async def _authenticated(
        self, packet: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Connection | None:
        user = packet.get("user", "")
        if not isinstance(self.authenticate, UnsafeTrust):
            writer.write(message(b"R", struct.pack("!I", 3)))
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
                writer.write(error("28P01", f"password authentication failed for {user}"))
                await writer.drain()
                return None
        out = message(b"R", struct.pack("!I", 0))
        # PostgreSQL's default isolation: a transaction that begins with a read is a reader
        session = self.database.session(autocommit=True, dialect="postgres", read_committed=True)
        try:  # after the login, as PostgreSQL's: FATAL, the session not begun
            startup = read_startup(packet, session.defaults.now)
        except errors.Error as exc:
            session.close()
            self.counts["refused"] += 1
            writer.write(out + error(exc.sqlstate, str(exc), "FATAL"))
            await writer.drain()
            return None
        session.defaults.begin_with(startup.modes)
        session.client = Client(user, packet.get("database") or user)  # libpq's default too
        parameters = {
            "application_name": startup.application_name,
            **pg_settings.REPORTED,
            "default_transaction_read_only": "on" if startup.modes.read_only else "off",
            "in_hot_standby": "off",
        }
        for name, value in parameters.items():
            out += message(b"S", cstr(name) + cstr(value))
        out += message(b"K", struct.pack("!II", next(_PROCESS_IDS), 0))
        self.log(f"{user}: session")
        self.counts["sessions"] += 1
        writer.write(out + ready(session))
        await writer.drain()
        return Connection(session, user, reported_read_only=startup.modes.read_only)
