"""Connection limits of every server: caps per source and overall, clean refusals, quiet logs.

One unauthenticated source must not starve the others, and no flood may exhaust the process's
file descriptors. So a server admits a connection only while its source holds fewer than
`max_per_source` and the server fewer than `max_connections` (by default the open-file limit
minus headroom for the store, the bus and the logs). A refused connection is accepted and
closed at once with a reset (no traceback, no TIME_WAIT); running out of descriptors anyway
pauses accepting briefly. Refusals are counted and logged as one summary line per interval,
never one line per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import resource
import socket
import struct
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

OPEN_FILES_HEADROOM = 128  # descriptors kept free at least (store, bus, logs, worker pipes)
ACCEPT_PAUSE = 0.25  # seconds accepting pauses when the process is out of descriptors
# Errors of accept() that mean "out of resources", not "this listener is broken".
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Errors of accept() about one connection that died in the backlog: skip it.
_ABORTED = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET})
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_SOURCES_LOGGED = 1024  # distinct sources remembered per log interval (a flood may spoof many)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def connection_budget(limit: int | None = None) -> int:
    """Connections a server may hold: the open-file limit minus headroom (an eighth, >= 128)."""
    if limit is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
    return max(1, limit - max(OPEN_FILES_HEADROOM, limit // 8))


def source_key(host: str) -> str:
    """What a per-source cap counts against: an IPv4 address, or an IPv6 /64 (one site's)."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections one source, and the server in all, may hold."""

    max_per_source: int = 1024  # meters behind one NAT share an address: raise it there
    # 0: share the process's `connection_budget()` with its other servers (a TCP and an HTTP
    # receiver in one head-end draw on the same descriptors); else this server's own cap.
    max_connections: int = 0
    refusal_log_interval: float = 10.0  # seconds between summary lines of refusals

    def gate(self, counts: Counter[str]) -> ConnectionGate:
        """A gate applying these caps, counting refusals in `counts`."""
        if self.max_connections:
            return ConnectionGate(self.max_per_source, self.max_connections, counts)
        return ConnectionGate(self.max_per_source, connection_budget(), counts, PROCESS)


class ConnectionCount:
    """Connections open in all the servers that share it (the process's descriptors)."""

    def __init__(self) -> None:
        self.open = 0
        self._lock = threading.Lock()  # servers may run on event loops in several threads

    def take(self, most: int) -> bool:
        """Count one more connection if fewer than `most` are open."""
        with self._lock:
            if self.open >= most:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        """Count one connection fewer."""
        with self._lock:
            self.open -= 1


PROCESS = ConnectionCount()  # every server whose limits leave max_connections at 0


class ConnectionGate:
    """Sans-IO bookkeeping of open connections per source; admits or names the cap hit."""

    def __init__(
        self,
        max_per_source: int,
        max_connections: int,
        counts: Counter[str],
        shared: ConnectionCount | None = None,
    ) -> None:
        self.max_per_source = max_per_source
        self.max_connections = max_connections
        self.counts = counts
        self.shared = shared or ConnectionCount()  # max_connections applies to this count
        self.open = 0
        self._by_source: dict[str, int] = {}

    def admit(self, source: str) -> str | None:
        """Take a slot for a connection from `source`; None, or the refusal's counter name."""
        held = self._by_source.get(source, 0)
        if held >= self.max_per_source:
            refusal = "refused_source_full"
        elif not self.shared.take(self.max_connections):
            refusal = "refused_server_full"
        else:
            self._by_source[source] = held + 1
            self.open += 1
            return None
        self.counts[refusal] += 1
        return refusal

    def release(self, source: str) -> None:
        """Free the slot of a connection from `source` that `admit` let in."""
        self.shared.give_back()
        self.open -= 1
        held = self._by_source.pop(source) - 1
        if held:
            self._by_source[source] = held

    def held(self, source: str) -> int:
        """Connections `source` holds now."""
        return self._by_source.get(source, 0)


class RefusalLog:
    """Refusals summed up in one log line per interval: counts by reason, the busiest source."""

    def __init__(
        self,
        server: str,
        interval: float,
        logger: logging.Logger = log,
        *,
        what: str = "connections",  # what the line says was refused
    ) -> None:
        self.server, self.interval, self.logger, self.what = server, interval, logger, what
        self._reasons: Counter[str] = Counter()
        self._sources: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def note(self, reason: str, source: str) -> None:
        """Remember one refusal; the line goes out at the end of the interval."""
        self._reasons[reason] += 1
        if source in self._sources or len(self._sources) < _SOURCES_LOGGED:
            self._sources[source] += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Log the summary of what was noted since the last one (nothing if nothing was)."""
        self._timer = None
        if not self._reasons:
            return
        reasons = ", ".join(f"{name} {n}" for name, n in self._reasons.most_common())
        busiest, most = self._sources.most_common(1)[0]
        self.logger.warning(
            "%s refused %d %s in %.0f s (%s); busiest source %s (%d)",
            self.server,
            self._reasons.total(),
            self.what,
            self.interval,
            reasons,
            busiest,
            most,
        )
        self._reasons.clear()
        self._sources.clear()

    def close(self) -> None:
        """Log what is pending now and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
        self.flush()


def listen_socket(
    host: str, port: int, backlog: int = 4096, *, reuse_port: bool = False
) -> socket.socket:
    """A listening TCP socket on `host` (IPv4, IPv6 or a name, resolved here) and `port`."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family = infos[0][0] if infos else socket.AF_INET
    address = (host, port)
    server = socket.create_server(address, family=family, backlog=backlog, reuse_port=reuse_port)
    no_delay(server)  # accepted connections inherit it (Linux)
    return server


def no_delay(connection: socket.socket) -> None:
    """Send small writes at once (TCP_NODELAY). asyncio sets it only on sockets whose `proto`
    says TCP, and `create_server`'s and their accepted ones say 0: a response's head and body,
    two writes, waited for the peer's delayed ACK (40 ms on Linux) before the body went."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reset_on_close(connection: socket.socket) -> None:
    """Make closing `connection` send a reset: no FIN handshake, no TIME_WAIT left behind."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)


def refuse(connection: socket.socket) -> None:
    """Close an accepted connection at once with a reset: nothing read, nothing left behind."""
    reset_on_close(connection)
    connection.close()


class GatedListener:
    """Accepts connections under a `ConnectionGate` and serves each admitted one as streams."""

    def __init__(
        self,
        server: str,
        handler: Handler,
        limits: ConnectionLimits,
        counts: Counter[str],
        *,
        read_limit: int = 2**16,
    ) -> None:
        self.server = server
        self.handler = handler
        self.counts = counts
        self.gate = limits.gate(counts)
        self.refusals = RefusalLog(server, limits.refusal_log_interval)
        self.read_limit = read_limit
        self.connections: set[asyncio.Task[None]] = set()  # being served now
        self._socket: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    async def start(
        self, host: str, port: int, *, backlog: int = 4096, reuse_port: bool = False
    ) -> int:
        """Listen and start accepting; returns the bound port."""
        self._socket = listen_socket(host, port, backlog, reuse_port=reuse_port)
        self._socket.setblocking(False)
        self._accepting = asyncio.create_task(self._accept(self._socket), name="accept")
        return int(self._socket.getsockname()[1])

    async def close(self) -> None:
        """Stop accepting and close the listening socket (open connections stay)."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._socket is not None:
            self._socket.close()
        self.refusals.close()

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, address = await loop.sock_accept(listening)
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    # Out of descriptors: wait for some to be freed instead of spinning.
                    self.counts["accept_paused"] += 1
                    self.refusals.note("out_of_files", "-")
                    await asyncio.sleep(ACCEPT_PAUSE)
                    continue
                if exc.errno in _ABORTED:
                    continue
                log.exception("%s stopped accepting connections", self.server)
                return
            source = source_key(address[0]) if isinstance(address, tuple) else "local"
            refusal = self.gate.admit(source)
            if refusal is not None:
                refuse(connection)
                self.refusals.note(refusal, source)
                continue
            task = asyncio.create_task(self._serve(connection, source))
            self.connections.add(task)
            task.add_done_callback(self.connections.discard)

    async def _serve(self, connection: socket.socket, source: str) -> None:
        try:
            try:
                reader, writer = await asyncio.open_connection(
                    sock=connection, limit=self.read_limit
                )
            except OSError:
                connection.close()
                self.counts["connection_lost"] += 1
                return
            await self.handler(reader, writer)
        finally:
            self.gate.release(source)
