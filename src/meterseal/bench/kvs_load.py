"""The client processes of `bench kvs`: each opens the store over the same node directories.

A `ClientPool` starts `n` processes once (spawn: no inherited threads or loops); each keeps
its own event loop and `ObjectStore` over the bench's local-directory nodes and catalog, as
one more gateway process would. For a cell of Fig. 6 the parent sends every client the same
task with a common start time; each client puts (or gets) objects of the cell's size until
the window closes and reports its operations, so the rate is all clients' operations in the
same window.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterseal.errors import KvsError
from meterseal.kvs.nodes import BlobNode, LocalDirCatalog, LocalDirNode
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.store import ObjectStore

if TYPE_CHECKING:
    from meterseal.kvs.nats_nodes import NatsParts, NatsStorage

BUCKET = "bench"
START_DELAY = 0.3  # seconds from sending a task to its window opening (every client waiting)
NAMES_PER_CLIENT = 2
NATS_TIMEOUT = 5.0  # seconds per JetStream request: a loaded 2-vCPU machine runs 5 servers
NATS_ATTEMPTS = 20  # written objects rotate over these names: disk use stays bounded


@dataclass(frozen=True)
class Layout:
    """The bench's storage, one master key: `nodes` directories and a catalog under `root`, or
    the servers n1..nN of a local NATS cluster at `nats` (streams named after `deployment`)."""

    root: Path
    nodes: int
    master: bytes
    nats: tuple[str, ...] = ()
    deployment: str = "bench"

    def node_dirs(self) -> list[Path]:
        """DIR/node-0 …"""
        return [self.root / f"node-{i}" for i in range(self.nodes)]

    def open(self, clock: Any = time.time) -> ObjectStore:
        """The store over these nodes (randomness from the OS, as the gateway's)."""
        nodes: list[BlobNode] = [
            LocalDirNode(f"node-{i}", path) for i, path in enumerate(self.node_dirs())
        ]
        return ObjectStore(
            nodes,
            LocalDirCatalog(self.root / "catalog"),
            lambda bucket: derive_bucket_key(self.master, bucket),
            clock=clock,
            rng=os.urandom,
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[ObjectStore]:
        """The store: over the local directories, or over the NATS servers (connected on the
        running loop, closed at the end; a replica set of 3 copies for rep:3, the catalog
        with 3 replicas)."""
        if not self.nats:
            yield self.open()
            return
        from meterseal.kvs.nats_nodes import NatsStorage

        storage = await NatsStorage.connect(self.nats, self.deployment, timeout=NATS_TIMEOUT)
        try:
            parts = await _parts(storage, self.nodes)
            yield ObjectStore(
                parts.nodes,
                parts.catalog,
                lambda bucket: derive_bucket_key(self.master, bucket),
                clock=time.time,
                rng=os.urandom,
                replica_sets=parts.replica_sets,
            )
        finally:
            await storage.close()


async def _parts(storage: NatsStorage, nodes: int) -> NatsParts:
    """The nodes' streams, retried while a restarted server is taking its streams back."""
    names = [f"n{i + 1}" for i in range(nodes)]
    for _ in range(NATS_ATTEMPTS - 1):
        try:
            return await storage.parts(names, copies=(3,))
        except KvsError:
            await asyncio.sleep(1.0)
    return await storage.parts(names, copies=(3,))


@dataclass(frozen=True)
class Task:
    """One cell for every client: prepare read objects, or run puts/gets in a window."""

    op: str  # "prepare", "put", "get", "clean" or "stop"
    policy: str = "rep:1"
    size: int = 0
    start_at: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class ClientResult:
    """What one client did in a window: operations, failures, and when it finished."""

    client: int
    ops: int
    errors: int
    started_at: float
    finished_at: float
    error: str | None = None


def read_name(policy: str, size: int, client: int) -> str:
    """The object a client reads in a cell."""
    return f"read/{policy}/{size}/c{client}"


async def _window(store: ObjectStore, client: int, task: Task, data: bytes) -> ClientResult:
    """Run the task's operation back to back until its window closes."""
    policy = parse_policy(task.policy)
    await asyncio.sleep(max(0.0, task.start_at - time.time()))
    end = task.start_at + task.seconds
    ops = errors = 0
    last: str | None = None
    while True:
        try:
            if task.op == "put":
                name = write_name(task.policy, task.size, client, ops)
                await store.put_bytes(BUCKET, name, data, policy)
            else:
                got = await store.get_bytes(BUCKET, read_name(task.policy, task.size, client))
                if len(got) != task.size:
                    raise ValueError(f"read {len(got)} bytes, not {task.size}")
            ops += 1
        except Exception as exc:  # counted and reported: the bench says how many failed
            errors += 1
            last = f"{type(exc).__name__}: {exc}"
        if time.time() >= end:
            return ClientResult(client, ops, errors, task.start_at, time.time(), last)


def write_name(policy: str, size: int, client: int, turn: int) -> str:
    """An object a client writes in a cell (NAMES_PER_CLIENT of them in turn)."""
    return f"write/{policy}/{size}/c{client}/{turn % NAMES_PER_CLIENT}"


async def _clean(store: ObjectStore, client: int, task: Task) -> ClientResult:
    """Delete what the client stored in the cell: disk use stays one cell's."""
    names = [read_name(task.policy, task.size, client)] + [
        write_name(task.policy, task.size, client, turn) for turn in range(NAMES_PER_CLIENT)
    ]
    for name in names:
        await store.delete(BUCKET, name)
    return ClientResult(client, len(names), 0, time.time(), time.time())


def _client_main(client: int, layout: Layout, inbox: Queue[Task], outbox: Queue[Any]) -> None:
    """A client process: serve tasks until told to stop."""
    loop = asyncio.new_event_loop()
    session = AsyncExitStack()
    store = loop.run_until_complete(session.enter_async_context(layout.session()))
    while (task := inbox.get()).op != "stop":
        data = os.urandom(task.size)
        if task.op == "clean":
            outbox.put(loop.run_until_complete(_clean(store, client, task)))
        elif task.op == "prepare":
            name = read_name(task.policy, task.size, client)
            loop.run_until_complete(store.put_bytes(BUCKET, name, data, parse_policy(task.policy)))
            outbox.put(ClientResult(client, 1, 0, time.time(), time.time()))
        else:
            outbox.put(loop.run_until_complete(_window(store, client, task, data)))
    loop.run_until_complete(session.aclose())
    loop.close()


class ClientPool:
    """`n` client processes over one layout; `run` gives every client the same task."""

    def __init__(self, layout: Layout, clients: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.outbox: Queue[Any] = context.Queue()
        self.inboxes: list[Queue[Task]] = [context.Queue() for _ in range(clients)]
        self.processes = [
            context.Process(
                target=_client_main, args=(i, layout, self.inboxes[i], self.outbox), daemon=True
            )
            for i in range(clients)
        ]
        for process in self.processes:
            process.start()

    def run(self, task: Task) -> list[ClientResult]:
        """Send `task` to every client; their results, by client."""
        for inbox in self.inboxes:
            inbox.put(task)
        timeout = 600 + task.seconds
        results = [self.outbox.get(timeout=timeout) for _ in self.inboxes]
        return sorted(results, key=lambda r: r.client)

    def run_prepare(self, policy: str, size: int) -> None:
        """Every client writes the object of `size` it will read in the cell."""
        self.run(Task("prepare", policy, size))

    def clean(self, policy: str, size: int) -> None:
        """Every client deletes the objects it stored in the cell."""
        self.run(Task("clean", policy, size))

    def window(self, op: str, policy: str, size: int, seconds: float) -> list[ClientResult]:
        """Every client runs `op` on objects of `size` in one common window."""
        start_at = time.time() + START_DELAY
        return self.run(Task(op, policy, size, start_at, seconds))

    def close(self) -> None:
        """Stop the clients and wait for them."""
        for inbox in self.inboxes:
            inbox.put(Task("stop"))
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()
            return
        for process in self.processes:  # interrupted or failed: no task will be answered
            process.kill()
            process.join(timeout=30)
