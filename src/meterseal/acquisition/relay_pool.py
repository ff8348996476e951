"""Relay processes: several `Relay`s sharing one listening port, each in a fresh process.

The processes are spawned (a new interpreter), never forked: a relay must not inherit a key
from a parent that holds one, as the bench's head-end process does. Each is steered over a
pipe ("status", "stop") and stops by itself once the pipe closes, so a killed parent leaves
no relay behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import resource
import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from meterseal.acquisition.relay import RELAY_EVENTS, Relay, RelayConfig, RelayStatus


def raise_open_files_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; returns the limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def receive(connection: Connection) -> object:
    """The next object from a pipe, without blocking the event loop (EOFError once closed)."""
    loop = asyncio.get_running_loop()
    while not connection.poll():
        readable = asyncio.Event()
        loop.add_reader(connection.fileno(), readable.set)
        try:
            await readable.wait()
        finally:
            loop.remove_reader(connection.fileno())
    return connection.recv()


def _relay_process(config: RelayConfig, control: Connection) -> None:
    # Ctrl-C reaches the whole process group; the pool decides when relays stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_open_files_limit()
    asyncio.run(_serve(config, control))


async def _serve(config: RelayConfig, control: Connection) -> None:
    relay = Relay(config)
    await relay.start()
    control.send(relay.status())  # ready
    with contextlib.suppress(EOFError):
        while await receive(control) == "status":
            control.send(relay.status())
    await relay.stop()
    with contextlib.suppress(OSError):
        control.send(relay.status())


class RelayPool:
    """Relay processes sharing one listening port, each spawned fresh and steered by a pipe."""

    def __init__(self, config: RelayConfig, processes: int, *, ready_timeout: float = 60.0):
        self.config, self.processes, self.ready_timeout = config, processes, ready_timeout
        self.port = config.listen[1]
        self._relays: list[tuple[BaseProcess, Connection]] = []

    def start(self) -> int:
        """Spawn the relays and wait until all listen; returns the shared port."""
        host, port = self.config.listen
        # Port 0: take one now and hold it (bound, not listening, so it gets no connections).
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as hold:
            hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            hold.bind((host, port))
            self.port = hold.getsockname()[1]
            config = dataclasses.replace(self.config, listen=(host, self.port))
            context = multiprocessing.get_context("spawn")
            for _ in range(self.processes):
                mine, theirs = context.Pipe()
                process: BaseProcess = context.Process(target=_relay_process, args=(config, theirs))
                process.daemon = True
                process.start()
                theirs.close()
                self._relays.append((process, mine))
            for process, pipe in self._relays:
                try:
                    ready = pipe.poll(self.ready_timeout) and pipe.recv()
                except EOFError:
                    ready = False  # it died starting (the port taken by another user?)
                if not ready:
                    self.stop()
                    raise RuntimeError(f"relay process {process.pid} did not start")
        return self.port

    def status(self) -> list[RelayStatus]:
        """Every relay's status now."""
        for _, pipe in self._relays:
            pipe.send("status")
        return [pipe.recv() for _, pipe in self._relays]

    def stop(self, timeout: float = 10.0) -> list[RelayStatus]:
        """Stop every relay; their final statuses (of those that answered)."""
        final = []
        for _, pipe in self._relays:
            with contextlib.suppress(OSError):
                pipe.send("stop")
        for process, pipe in self._relays:
            with contextlib.suppress(EOFError, OSError):
                if pipe.poll(timeout):
                    final.append(pipe.recv())
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()
            pipe.close()
        self._relays.clear()
        return final


def serve_pool(
    pool: RelayPool, status_every: float, show: Callable[[list[RelayStatus]], object]
) -> list[RelayStatus]:
    """Until SIGINT or SIGTERM, `show` the relays' status every `status_every` s; then stop them."""
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not stop.wait(status_every):
            show(pool.status())
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return pool.stop()


def status_line(statuses: Sequence[RelayStatus]) -> str:
    """The relays' counters summed into one line for the log."""
    counts: Counter[str] = Counter()
    for status in statuses:
        counts.update(status.counts)
    faults = ", ".join(
        f"{k} {v:,}" for k, v in sorted(counts.items()) if k not in RELAY_EVENTS and v
    )
    return (
        f"{len(statuses)} relays: {sum(s.open for s in statuses):,} meters connected "
        f"(peaks {sum(s.peak for s in statuses):,}), {counts['meters']:,} so far, "
        f"{counts['frames']:,} frames, {counts['acks']:,} acks; faults: {faults or 'none'}"
    )
