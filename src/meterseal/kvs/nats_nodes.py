"""Storage nodes of the secure KVS on NATS JetStream: one server per node, in one cluster.

`NatsStorage` holds one client connection to the cluster and makes, for a deployment:

* `NatsNode` per storage node: a single-replica stream pinned to that node's server by its
  placement tag (``node:<name>``, the server's ``server_tags``), for fragments;
* `NatsReplicaSet`: one stream replicated by JetStream on `copies` servers (R=copies), for
  full replicas;
* `NatsCatalog`: one replicated stream keeping the last message per subject, for sealed
  manifests.

Streams are made with an explicit `StreamConfig` (nats-py's ``create_key_value`` would drop
the placement). A blob lives under ``kvs.<deployment>.<stream>.<blob id>.<part>``: NATS
limits a message to the server's ``max_payload`` (1 MiB by default), so a larger blob is
split into parts of ``max_payload - 1 KiB`` (kvs/nats_stream.py); part 0 names the count and
size in its headers and is written last, so a blob whose part 0 is there is whole. A put is
durable when the stream acknowledged every part. Reads of a single-replica node go to its
server (direct get); reads of replicated streams (replica sets, the catalog) go through the
stream leader, as a follower may lag behind an overwrite or a delete, and to any replica when
there is no leader, so a replica set serves reads with all but one of its servers down.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meterseal.errors import KvsError
from meterseal.kvs.nats_stream import ELECTION_WAIT, NatsStream
from meterseal.kvs.nodes import check_blob_id, check_bucket_id
from meterseal.runtime.nats_endpoint import NatsEndpoint

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext
    from nats.js.manager import JetStreamManager

HEADROOM = 1024  # bytes of a message left for headers below the server's max_payload
MAX_REPLICAS = 5  # JetStream's limit on a stream's replicas
MANAGEMENT_TIMEOUT = 10.0  # seconds a stream's creation may take (Raft placement under load)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def check_name(what: str, name: str) -> str:
    """`name` when it is 1 to 32 of [A-Za-z0-9_-] (safe in stream names and subjects)."""
    if not _NAME.fullmatch(name):
        raise KvsError(f"{what} {name!r} must be 1-32 of [A-Za-z0-9_-]")
    return name


def node_tag(name: str) -> str:
    """The placement tag (a server's ``server_tags``) of the server that is node `name`."""
    return f"node:{name}"


@dataclass(frozen=True)
class Layout:
    """Stream names and subjects of one deployment's KVS (unique per deployment or test run)."""

    deployment: str

    def __post_init__(self) -> None:
        check_name("deployment", self.deployment)

    def stream(self, kind: str) -> tuple[str, str]:
        """The stream name and base subject of `kind` (``n-<node>``, ``r<copies>``, ``cat``)."""
        return f"KVS_{self.deployment}_{kind}", f"kvs.{self.deployment}.{kind}"


class _Blobs:
    """The BlobNode operations over one stream."""

    name: str
    _stream: NatsStream
    _consistent = False

    async def put(self, blob_id: str, data: bytes) -> None:
        """Store the blob; durable when the stream acknowledged every part."""
        await self._stream.write(check_blob_id(blob_id), bytes(data))

    async def get(self, blob_id: str) -> bytes | None:
        """The blob, or None when absent; KvsError when the node is unavailable."""
        return await self._stream.read(check_blob_id(blob_id), consistent=self._consistent)

    async def delete(self, blob_id: str) -> None:
        """Remove the blob (every part); absent is fine."""
        await self._stream.purge(check_blob_id(blob_id))

    async def blob_ids(self) -> AsyncIterator[str]:
        """Every whole blob's id, sorted."""
        for blob_id in await self._stream.names():
            yield blob_id

    async def healthy(self) -> bool:
        """Whether the node takes writes now."""
        return await self._stream.probe()


class NatsNode(_Blobs):
    """A BlobNode: a single-replica stream on the server tagged ``node:<name>``."""

    def __init__(self, name: str, stream: NatsStream) -> None:
        self.name = name
        self._stream = stream
        self.stream = stream.name


class NatsReplicaSet(_Blobs):
    """A ReplicaSet: one stream JetStream replicates on `copies` servers."""

    # Through the leader: a follower may still hold the blob an overwrite replaced.
    _consistent = True

    def __init__(self, name: str, copies: int, stream: NatsStream) -> None:
        self.name = name
        self.copies = copies
        self._stream = stream
        self.stream = stream.name


class NatsCatalog:
    """A Catalog: sealed manifests on a replicated stream, the last message per subject."""

    def __init__(self, stream: NatsStream) -> None:
        self._stream = stream
        self.stream = stream.name

    @staticmethod
    def _name(bucket_id: str, key: str) -> str:
        return f"{check_bucket_id(bucket_id)}.{check_blob_id(key)}"

    async def put(self, bucket_id: str, key: str, sealed: bytes) -> None:
        """Store the sealed manifest durably (replacing the previous one)."""
        await self._stream.write(self._name(bucket_id, key), bytes(sealed))

    async def get(self, bucket_id: str, key: str) -> bytes | None:
        """The sealed manifest, or None."""
        return await self._stream.read(self._name(bucket_id, key), consistent=True)

    async def delete(self, bucket_id: str, key: str) -> None:
        """Remove the entry; absent is fine."""
        await self._stream.purge(self._name(bucket_id, key))

    async def items(self, bucket_id: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every (key, sealed manifest) of the bucket, by key."""
        for key in await self.keys(bucket_id):
            sealed = await self._stream.read(self._name(bucket_id, key), consistent=True)
            if sealed is not None:
                yield key, sealed

    async def keys(self, bucket_id: str) -> list[str]:
        """The bucket's keys, sorted (from the stream's subjects: no entry is read)."""
        prefix = f"{check_bucket_id(bucket_id)}."
        return [name.removeprefix(prefix) for name in await self._stream.names(f"{prefix}*")]

    async def bucket_ids(self) -> list[str]:
        """The buckets with entries (from the stream's subjects)."""
        return sorted({name.split(".", 1)[0] for name in await self._stream.names("*.*")})


@dataclass(frozen=True)
class NatsParts:
    """What an ObjectStore on NATS is made of: nodes, replica sets, the catalog."""

    nodes: list[NatsNode]
    replica_sets: list[NatsReplicaSet]
    catalog: NatsCatalog


class NatsStorage:
    """One client connection to the cluster; the deployment's nodes, replica sets, catalog."""

    def __init__(self, client: Client, layout: Layout, *, timeout: float = 2.0) -> None:
        self.client = client
        self.layout = layout
        self.timeout = timeout
        self.probe_timeout = min(timeout, 1.0)
        self.part_size = max(1, client.max_payload - HEADROOM)
        self._js: JetStreamContext | None = None
        # How long a replicated stream's write waits for a new leader, on which clock.
        self.election_wait = ELECTION_WAIT
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @classmethod
    async def connect(
        cls, urls: Sequence[str], deployment: str, *, timeout: float = 2.0
    ) -> NatsStorage:
        """Connect to the cluster at `urls` (nats:// or tls:// with ca/cert/key options)."""
        import nats

        endpoints = [NatsEndpoint.parse(url) for url in urls]
        if not endpoints:
            raise KvsError("no NATS server URL for the KVS storage nodes")
        options: dict[str, Any] = endpoints[0].connect_options()
        options.update(
            servers=[e.server for e in endpoints],
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=timeout,
        )
        try:
            client = await asyncio.wait_for(nats.connect(**options), timeout * (len(urls) + 1))
        except Exception as exc:
            shown = ", ".join(e.shown() for e in endpoints)
            raise KvsError(f"cannot connect to the KVS NATS cluster at {shown}: {exc}") from None
        return cls(client, Layout(deployment), timeout=timeout)

    def manager(self) -> JetStreamManager:
        """JetStream's stream management, with a longer bound than data requests: a cluster
        places a new stream through its meta leader's Raft, seconds on a loaded machine."""
        return self.client.jsm(timeout=max(self.timeout, MANAGEMENT_TIMEOUT))

    def jetstream(self) -> JetStreamContext:
        """The JetStream context of the connection (requests bounded by `timeout`)."""
        if self._js is None:
            self._js = self.client.jetstream(timeout=self.timeout)
        return self._js

    async def request(self, subject: str, payload: bytes) -> dict[str, Any]:
        """A JetStream API request and its JSON reply."""
        reply = await self.client.request(subject, payload, timeout=self.timeout)
        answer = json.loads(reply.data)
        return answer if isinstance(answer, dict) else {}

    async def node(self, name: str, *, down_ok: bool = False) -> NatsNode:
        """Node `name`: its stream made (single replica, placed by tag ``node:<name>``).

        With `down_ok`, a node whose server does not answer now is returned unhealthy (its
        stream is made on the first probe that reaches it), so a gateway starts with a node down.
        """
        stream = NatsStream(self, *self.layout.stream(f"n-{check_name('node', name)}"), 1)
        try:
            await stream.ensure([node_tag(name)])
        except KvsError:
            if not down_ok:
                raise
            stream.made, stream.suspect = False, True
        return NatsNode(name, stream)

    async def replica_set(
        self, copies: int, name: str | None = None, *, down_ok: bool = False
    ) -> NatsReplicaSet:
        """A replica set of `copies` (1-5) copies: one stream with R=copies (`down_ok`: as node)."""
        if not 1 <= copies <= MAX_REPLICAS:
            raise KvsError(f"a NATS replica set keeps 1 to {MAX_REPLICAS} copies, not {copies}")
        name = check_name("replica set", name or f"rep{copies}")
        stream = NatsStream(self, *self.layout.stream(f"r-{name}"), copies)
        try:
            await stream.ensure()
        except KvsError:
            if not down_ok:
                raise
            stream.made, stream.suspect = False, True
        return NatsReplicaSet(name, copies, stream)

    async def catalog(self, replicas: int = 3) -> NatsCatalog:
        """The catalog: one stream with R=`replicas` keeping the last manifest per key."""
        if not 1 <= replicas <= MAX_REPLICAS:
            raise KvsError(f"the NATS catalog has 1 to {MAX_REPLICAS} replicas, not {replicas}")
        stream = NatsStream(self, *self.layout.stream("cat"), replicas)
        await stream.ensure()
        return NatsCatalog(stream)

    async def parts(
        self, node_names: Sequence[str], *, copies: Sequence[int] = (3,), catalog_replicas: int = 3
    ) -> NatsParts:
        """The nodes named, a replica set per entry of `copies` and the catalog (made as needed)."""
        nodes = [await self.node(name) for name in node_names]
        replica_sets = [await self.replica_set(n) for n in copies]
        return NatsParts(nodes, replica_sets, await self.catalog(catalog_replicas))

    async def delete_streams(self) -> list[str]:
        """Delete every stream of this deployment (tests, teardown); their names."""
        prefix = f"KVS_{self.layout.deployment}_"
        js = self.jetstream()
        names = [info.config.name for info in await js.streams_info()]
        deleted = [name for name in names if name and name.startswith(prefix)]
        for name in deleted:
            await js.delete_stream(name)
        return deleted

    async def close(self) -> None:
        """Close the connection (after flushing)."""
        await self.client.close()
