"""A gateway served over HTTP on a store of memory nodes, with one API key per kind of scope."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from meterseal.accounts.throttle import Throttle
from meterseal.kvs.chunks import Piece
from meterseal.kvs.gateway import MAX_OBJECT_BYTES, create_gateway_app
from meterseal.kvs.gateway_auth import KvsAuthenticator
from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.kvs.gateway_keys import KeyTable, Right, Scope
from meterseal.kvs.gateway_state import RESERVED, GatewayState
from meterseal.kvs.nodes import MemoryCatalog, MemoryNode
from meterseal.kvs.policy import Policy, Replication, parse_policy
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.service import store_scrub
from meterseal.kvs.store import ObjectInfo, ObjectStore
from meterseal.runtime.http import ThreadedServer
from tests.kvs.store_fixtures import MASTER, memory_store

CHUNK = 1024
R, W, A = Right.READ, Right.WRITE, Right.ADMIN
SCOPES = {
    "meters-rw": Scope("meters", "", frozenset((R, W))),
    "meters-read": Scope("meters", "", frozenset((R,))),
    "meters-write": Scope("meters", "", frozenset((W,))),
    "north-rw": Scope("meters", "north/", frozenset((R, W))),
    "bills-rw": Scope("bills", "", frozenset((R, W))),
    "meters-admin": Scope("meters", "", frozenset((A, R))),
    "all-admin": Scope("*", "", frozenset((A,))),
    "all-rw": Scope("*", "", frozenset((R, W))),
}


class Recording:
    """The store, recording the size of every piece it receives and sends (streaming)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.received: list[int] = []
        self.sent: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def put(
        self,
        bucket: str,
        name: str,
        chunks: AsyncIterable[Piece],
        policy: Policy,
        size: int | None = None,
    ) -> ObjectInfo:
        """The store's put, counting the pieces as they pass."""

        async def counted() -> AsyncIterator[Piece]:
            async for piece in chunks:
                if bucket != RESERVED:  # the gateway's own state is not the client's object
                    self.received.append(len(piece))
                yield piece

        return await self.store.put(bucket, name, counted(), policy, size)

    async def get(
        self, bucket: str, name: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The store's get, counting the pieces as they pass."""
        async for piece in self.store.get(bucket, name, start, end):
            self.sent.append(len(piece))
            yield piece


@dataclass
class Gateway:
    """A served gateway: its URL, the keys by scope name, its store and nodes."""

    url: str
    keys: dict[str, str]
    store: Recording
    nodes: list[MemoryNode]
    state: GatewayState
    registry: CollectorRegistry
    catalog: MemoryCatalog
    revoked: str = ""
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, scope: str | None) -> httpx.Client:
        """An HTTP client with the key of `scope` (None: no key)."""
        headers = {} if scope is None else {"Authorization": f"Bearer {self.keys[scope]}"}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client


def another_gateway(gateway: Gateway) -> GatewayState:
    """The state of a second gateway over the same nodes (or of `kvs keys …`)."""
    store = ObjectStore(
        gateway.nodes,
        gateway.catalog,
        lambda bucket: derive_bucket_key(MASTER, bucket),
        clock=lambda: 1_780_000_000.0,
        rng=os.urandom,
        chunk_size=CHUNK,
    )
    return GatewayState(store, parse_policy("ec:3+2"), Replication(3))


@contextmanager
def serve_gateway(
    nodes: int = 6,
    policy: str = "ec:3+2",
    throttle: Throttle | None = None,
    max_object: int = MAX_OBJECT_BYTES,
) -> Iterator[Gateway]:
    """A gateway over `nodes` memory nodes (1 KiB chunks) with a key per scope of SCOPES."""
    store, memory_nodes, catalog = memory_store(nodes, chunk_size=CHUNK)
    recording = Recording(store)
    state = GatewayState(recording, parse_policy(policy), Replication(3))
    table, keys = KeyTable(), {}
    for name, scope in SCOPES.items():
        table, new = table.add(scope, name, 1.0, os.urandom)
        keys[name] = new.secret
    table, gone = table.add(SCOPES["meters-rw"], "revoked", 1.0, os.urandom)
    table = table.revoke(gone.key.key_id, 2.0)
    asyncio.run(state.save_keys(table))
    registry = CollectorRegistry()
    metrics = KvsMetrics(registry)
    authenticator = KvsAuthenticator(state.key_table, throttle)
    scrub = store_scrub(store, state)
    app = create_gateway_app(
        recording, state, authenticator, metrics, scrub=scrub, max_object=max_object
    )
    with ThreadedServer(app) as url:
        gateway = Gateway(url, keys, recording, memory_nodes, state, registry, catalog, gone.secret)
        try:
            yield gateway
        finally:
            for client in gateway.clients:
                client.close()
