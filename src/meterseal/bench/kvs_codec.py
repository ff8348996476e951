"""The codec part of `bench kvs`: 16 MiB through the gateway and the store vs its primitives.

The gateway runs as it is deployed, in its own process: its app served by the runtime's
`HttpServer` on loopback HTTP over in-memory nodes (no disk: what the engine and the gateway
add, not what the nodes cost); the bench process is the client, holding a key of the bench's
bucket. The store engine runs in the bench process. AES-256-GCM, pyeclib (6+2) and the blobs'
GMAC tags run alone on the same bytes in the bench process, interleaved with the puts and gets
(`timing.measure_group`), so all see the same load. The bound is pyeclib's own binding, one
call at a time, whichever binding of liberasurecode the store uses (kvs/erasure.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import CollectorRegistry

from meterseal.bench.timing import Timing, measure_group
from meterseal.kvs.erasure import Coder
from meterseal.kvs.gateway import create_gateway_app
from meterseal.kvs.gateway_auth import KvsAuthenticator
from meterseal.kvs.gateway_client import GatewayClient
from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.kvs.gateway_keys import KeyTable, Right, Scope
from meterseal.kvs.gateway_state import GatewayState
from meterseal.kvs.nodes import BlobNode, MemoryCatalog, MemoryNode
from meterseal.kvs.policy import DEFAULT_CHUNK_SIZE, ErasureCoded, Replication
from meterseal.kvs.sealing import blob_tag
from meterseal.kvs.store import ObjectStore
from meterseal.runtime.heap import freeze_startup, hold_freed_memory
from meterseal.runtime.http import HttpServer

TARGET = 2.0  # the gateway's put/get within this factor of AES-GCM + erasure coding alone
CODEC_POLICY = ErasureCoded(6, 2)
BUCKET = "bench"


@dataclass(frozen=True)
class CodecResult:
    """Seconds per call for the codec and the store on `size` bytes (interleaved runs)."""

    size: int
    timings: dict[str, Timing]

    def bound(self, op: str) -> float:
        """The primitives' time of a put (encrypt + encode) or a get (decrypt + decode)."""
        t = self.timings
        if op == "put":
            return t["aes_encrypt"].median + t["encode"].median
        return t["aes_decrypt"].median + t["decode"].median

    def ratio(self, op: str, via: str = "gateway") -> float:
        """Put or get time over its primitives' time: `via` the store, the gateway with httpx
        or with http.client, or "client": the gateway with the faster of the two clients."""
        if via == "client":
            return min(self.ratio(op, "gateway"), self.ratio(op, "stdlib"))
        return self.timings[f"{via}_{op}"].median / self.bound(op)

    @property
    def met(self) -> bool:
        """The gateway's put and get (the faster client's) both within TARGET."""
        return self.ratio("put", "client") <= TARGET and self.ratio("get", "client") <= TARGET


def memory_store(nodes: int) -> ObjectStore:
    """A store over in-memory nodes (no disk: what the engine itself costs)."""
    master = os.urandom(32)
    memory: list[BlobNode] = [MemoryNode(f"m{i}") for i in range(nodes)]
    return ObjectStore(memory, MemoryCatalog(), lambda _b: master, clock=time.time, rng=os.urandom)


class _Connection(http.client.HTTPConnection):
    """`http.client`'s connection sending each write at once (TCP_NODELAY, as httpx does): a
    PUT's head and body are two writes, and Nagle held the body's last segment back until the
    gateway's delayed ACK of the head."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class StdlibClient:
    """PUT and GET of one object over one kept-alive `http.client` connection: the same
    requests as `GatewayClient`'s without httpx, to tell the client's cost from the gateway's."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.connection = _Connection(parts.hostname or "", parts.port, timeout=600)
        self.headers = {"Authorization": f"Bearer {key}"}

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        try:
            return self._once(method, path, body, headers)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the idle connection (keep-alive timeout): open a new one.
            self.connection.close()
            return self._once(method, path, body, headers)

    def _once(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        self.connection.request(method, path, body=body, headers={**self.headers, **headers})
        response = self.connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}")
        return data

    def put(self, name: str, data: bytes, policy: str) -> bytes:
        """Store `data` as `name` in the bench's bucket."""
        headers = {"Content-Type": "application/octet-stream", "X-Kvs-Policy": policy}
        return self._send("PUT", f"/v1/kvs/{BUCKET}/{name}", data, headers)

    def read(self, name: str) -> bytes:
        """The object `name` of the bench's bucket."""
        return self._send("GET", f"/v1/kvs/{BUCKET}/{name}", None, {})

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def _serve_gateway(conn: Connection, nodes: int) -> None:
    """The gateway process: serve until the bench says stop (or goes away)."""
    asyncio.run(_gateway(conn, nodes))


async def _gateway(conn: Connection, nodes: int) -> None:
    hold_freed_memory()  # the gateway's process as `kvs serve` sets it up
    store = memory_store(nodes)
    state = GatewayState(store, CODEC_POLICY, Replication(3))
    scope = Scope(BUCKET, "", frozenset((Right.READ, Right.WRITE)))
    table, key = KeyTable().add(scope, "bench", time.time(), os.urandom)
    await state.save_keys(table)
    metrics = KvsMetrics(CollectorRegistry())
    app = create_gateway_app(store, state, KvsAuthenticator(state.key_table), metrics)
    server = HttpServer(app)
    port = await server.start("127.0.0.1", 0)
    freeze_startup()  # as `kvs serve` does once its app is built
    conn.send((server.url("127.0.0.1", port), key.secret))
    with contextlib.suppress(EOFError, OSError):
        await asyncio.to_thread(conn.recv)  # the word to stop, or EOF when the bench is gone
    await server.stop()


@contextmanager
def served_gateway(nodes: int) -> Iterator[tuple[GatewayClient, StdlibClient]]:
    """The gateway in its own process over in-memory nodes on loopback HTTP; clients with a
    key of the bench's bucket."""
    context = multiprocessing.get_context("spawn")  # no inherited threads or event loops
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_serve_gateway, args=(theirs, nodes), name="kvs-gateway", daemon=True
    )
    process.start()
    theirs.close()
    try:
        try:
            if not ours.poll(60):
                raise EOFError
            url, secret = ours.recv()
        except EOFError:
            raise OSError("the gateway process did not start") from None
        with GatewayClient(url, secret, timeout=600) as client:
            stdlib = StdlibClient(url, secret)
            try:
                yield client, stdlib
            finally:
                stdlib.close()
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        ours.close()
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()


def measure_codec(size: int, seconds: float, runs: int) -> CodecResult:
    """`size` bytes through the gateway and the store (ec:6+2, in-memory nodes) and through
    their primitives alone, interleaved."""
    k, m = CODEC_POLICY.k, CODEC_POLICY.m
    data = os.urandom(size)
    store = memory_store(k + m)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(store.put_bytes(BUCKET, "codec", data, CODEC_POLICY))
    key, nonce, ad = os.urandom(32), bytes(12), b"bucket/name/version/policy/index"
    chunks = [data[i : i + DEFAULT_CHUNK_SIZE] for i in range(0, size, DEFAULT_CHUNK_SIZE)]
    sealed = [AESGCM(key).encrypt(nonce, c, ad) for c in chunks]
    ec = Coder(k, m, native=False)  # the bound is pyeclib's own coding, whatever the store uses
    encoded = [ec.encode(s) for s in sealed]
    fragments = [dict(enumerate(f[:k])) for f in encoded]
    ops: dict[str, Callable[[], object]] = {
        "aes_encrypt": lambda: [AESGCM(key).encrypt(nonce, c, ad) for c in chunks],
        "aes_decrypt": lambda: [AESGCM(key).decrypt(nonce, s, ad) for s in sealed],
        "encode": lambda: [ec.encode(s) for s in sealed],
        "decode": lambda: [ec.decode(f) for f in fragments],
        "tags": lambda: [
            blob_tag(key, i, position, f)
            for i, e in enumerate(encoded)
            for position, f in enumerate(e)
        ],
        "store_put": lambda: loop.run_until_complete(
            store.put_bytes(BUCKET, "codec", data, CODEC_POLICY)
        ),
        "store_get": lambda: loop.run_until_complete(store.get_bytes(BUCKET, "codec")),
    }
    policy = str(CODEC_POLICY)
    try:
        with served_gateway(k + m) as (gateway, stdlib):
            gateway.put(BUCKET, "codec", data, policy)
            ops["gateway_put"] = lambda: gateway.put(BUCKET, "codec", data, policy)
            ops["gateway_get"] = lambda: gateway.read(BUCKET, "codec")
            ops["stdlib_put"] = lambda: stdlib.put("codec", data, policy)
            ops["stdlib_get"] = lambda: stdlib.read("codec")
            timings = measure_group(ops, seconds, runs=runs)
    finally:
        loop.close()
    return CodecResult(size, timings)
