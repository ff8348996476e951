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
split into parts of ``max_payload - 1 KiB``; part 0 names the count and size in its headers
and is written last, so a blob whose part 0 is there is whole. A put is durable when the
stream acknowledged every part. Reads of a single-replica node go to its server (direct
get); reads of replicated streams (replica sets, the catalog) go through the stream leader,
as a follower may lag behind an overwrite or a delete, and to any replica when there is no
leader, so a replica set serves reads with all but one of its servers down.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meterseal.errors import KvsError
from meterseal.kvs.nodes import check_blob_id, check_bucket_id
from meterseal.runtime.nats_endpoint import NatsEndpoint

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext
    from nats.js.manager import JetStreamManager

PARTS = "Ms-Parts"
SIZE = "Ms-Size"
HEADROOM = 1024  # bytes of a message left for headers below the server's max_payload
MAX_REPLICAS = 5  # JetStream's limit on a stream's replicas
MANAGEMENT_TIMEOUT = 10.0  # seconds a stream's creation may take (Raft placement under load)
LEADERLESS_PAUSE = 5.0  # seconds consistent reads go to any replica after the leader failed
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


class _Stream:
    """One stream holding split blobs by name, and the reads and writes on it."""

    def __init__(self, storage: NatsStorage, name: str, base: str, replicas: int) -> None:
        self.storage, self.name, self.base, self.replicas = storage, name, base, replicas
        self.suspect = False  # a request timed out: probe before the next read
        self.tags: Sequence[str] = ()
        self.made = True  # False: its server was down when it was opened; made on a probe
        self.no_leader_until = 0.0  # monotonic time until which reads skip the stream leader

    async def _gate(self) -> None:
        """Fail fast when a single-replica stream's server was found down and still is."""
        if self.replicas == 1 and self.suspect and not await self.probe():
            raise KvsError(f"stream {self.name} is unavailable (its server does not answer)")

    def _lost(self, exc: BaseException) -> None:
        """Note a request that timed out: the next request probes the server first."""
        if isinstance(exc, TimeoutError):
            self.suspect = True

    def _error(self, what: str, exc: BaseException) -> KvsError:
        reason = str(exc) or type(exc).__name__
        return KvsError(f"stream {self.name}: {what}: {reason}")

    async def ensure(self, tags: Sequence[str] = ()) -> None:
        """Create the stream (or find it with the same configuration)."""
        from nats.js.api import Placement, StorageType, StreamConfig

        self.tags = tags
        from nats.js.errors import BadRequestError

        config = StreamConfig(
            name=self.name,
            subjects=[f"{self.base}.>"],
            num_replicas=self.replicas,
            placement=Placement(tags=list(tags)) if tags else None,
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            allow_direct=True,
        )
        try:
            await self.storage.manager().add_stream(config)
        except BadRequestError as exc:
            raise self._error("cannot be made as configured", exc) from None
        except Exception as exc:
            raise self._error("cannot be made (is its server up?)", exc) from None

    async def write(self, name: str, data: bytes) -> None:
        """Publish `data` under `name` (split into parts, part 0 last); durable when acked."""
        size = self.storage.part_size
        count = max(1, -(-len(data) // size))
        js = self.storage.jetstream()

        async def publish(index: int) -> None:
            headers = {PARTS: str(count), SIZE: str(len(data))} if index == 0 else None
            piece = data[index * size : (index + 1) * size]
            subject = f"{self.base}.{name}.{index}"
            await js.publish(subject, piece, stream=self.name, headers=headers)

        try:
            await asyncio.gather(*(publish(i) for i in range(1, count)))
            await publish(0)
        except Exception as exc:
            raise self._error(f"write of {name}", exc) from None

    async def read(self, name: str, *, consistent: bool = False) -> bytes | None:
        """The blob `name`, or None when absent or incomplete."""
        first = await self._part(name, 0, consistent)
        if first is None:
            return None
        data, headers = first
        try:
            count, size = int(headers[PARTS]), int(headers[SIZE])
        except (KeyError, ValueError):
            return None
        rest = await asyncio.gather(*(self._part(name, i, consistent) for i in range(1, count)))
        if any(part is None for part in rest):
            return None
        whole = b"".join([data, *(part[0] for part in rest if part is not None)])
        return whole if len(whole) == size else None

    async def _part(
        self, name: str, index: int, consistent: bool
    ) -> tuple[bytes, dict[str, str]] | None:
        subject = f"{self.base}.{name}.{index}"
        single = self.replicas == 1
        await self._gate()
        try:
            return await self._get(subject, consistent)
        except TimeoutError:
            # A server just lost, or a reply racing the client's reconnect: a single-replica
            # stream whose server takes no write is down; else try once more.
            if single:
                self.suspect = True
                if not await self.probe():
                    raise KvsError(f"stream {self.name}: server unavailable") from None
            try:
                return await self._get(subject, consistent)
            except TimeoutError as exc:
                raise self._error(f"read of {subject}", exc) from None

    async def _get(self, subject: str, consistent: bool) -> tuple[bytes, dict[str, str]] | None:
        """One message: from the stream leader when `consistent` (any replica without one)."""
        from nats.errors import NoRespondersError
        from nats.js.errors import NotFoundError, ServiceUnavailableError

        if consistent and self._leaderless():
            return await self._direct(subject)
        try:
            message = await self.storage.jetstream().get_msg(
                self.name, subject=subject, direct=not consistent
            )
        except NotFoundError:
            return None
        except (ServiceUnavailableError, NoRespondersError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and not consistent:
                raise
            if not consistent:
                raise self._error(f"read of {subject}", exc) from None
            self.no_leader_until = time.monotonic() + LEADERLESS_PAUSE
            return await self._direct(subject)
        except Exception as exc:
            raise self._error(f"read of {subject}", exc) from None
        return message.data or b"", dict(message.headers or {})

    async def _direct(self, subject: str) -> tuple[bytes, dict[str, str]] | None:
        """One message from whichever replica answers first (direct get; asked twice)."""
        from nats.js.errors import NotFoundError

        js = self.storage.jetstream()
        failure: BaseException | None = None
        for _ in range(2):  # a reply may race the client's reconnect after a loss
            try:
                message = await js.get_msg(self.name, subject=subject, direct=True)
            except NotFoundError:
                return None
            except TimeoutError as exc:
                failure = exc
                continue
            except Exception as exc:
                raise self._error(f"read of {subject}", exc) from None
            return message.data or b"", dict(message.headers or {})
        raise self._error(f"read of {subject}", failure or TimeoutError())

    async def purge(self, name: str) -> None:
        """Remove every part of `name` (absent is fine)."""
        await self._gate()
        try:
            await self.storage.jetstream().purge_stream(self.name, subject=f"{self.base}.{name}.>")
        except Exception as exc:
            self._lost(exc)
            raise self._error(f"delete of {name}", exc) from None

    async def names(self, pattern: str = "*") -> list[str]:
        """The names of the whole blobs (those with a part 0) matching `pattern`, sorted."""
        wanted = f"{self.base}.{pattern}.0"
        if self.replicas > 1 and self._leaderless():
            return await self._scanned(wanted)
        try:
            return await self._listed(wanted)
        except KvsError:
            if self.replicas == 1:
                raise
            self.no_leader_until = time.monotonic() + LEADERLESS_PAUSE
            return await self._scanned(wanted)  # no leader: walk the replicas' messages

    async def _listed(self, wanted: str) -> list[str]:
        """The names from the leader's subject counts (stream info), page by page."""
        await self._gate()
        found: list[str] = []
        offset = 0
        while True:
            request = json.dumps({"subjects_filter": wanted, "offset": offset}).encode()
            try:
                reply = await self.storage.request(f"$JS.API.STREAM.INFO.{self.name}", request)
            except Exception as exc:
                self._lost(exc)
                raise self._error("listing", exc) from None
            if "error" in reply:
                raise KvsError(f"stream {self.name}: listing: {reply['error']}")
            if "cluster" in reply and not (reply["cluster"] or {}).get("leader"):
                # The meta leader answers for a stream without a leader: config, no state.
                raise KvsError(f"stream {self.name}: listing: the stream has no leader")
            subjects = (reply.get("state") or {}).get("subjects") or {}
            found.extend(s[len(self.base) + 1 : -2] for s in subjects)
            offset += len(subjects)
            if not subjects or offset >= int(reply.get("total") or 0):
                return sorted(found)

    async def _scanned(self, wanted: str) -> list[str]:
        """The names from any replica, message by message (next message matching `wanted`)."""
        from nats.js.errors import NotFoundError

        js = self.storage.jetstream()
        found: set[str] = set()
        seq = 1
        while True:
            try:
                message = await js.get_msg(
                    self.name, seq=seq, subject=wanted, direct=True, next=True
                )
            except NotFoundError:
                return sorted(found)
            except Exception as exc:
                raise self._error("listing", exc) from None
            found.add(str(message.subject)[len(self.base) + 1 : -2])
            seq = int(message.seq or seq) + 1

    def _leaderless(self) -> bool:
        return time.monotonic() < self.no_leader_until

    async def probe(self) -> bool:
        """Whether the stream takes a write now (a tiny message on ``<base>.probe``)."""
        if not self.made:
            try:
                await self.ensure(self.tags)
            except KvsError:
                return False
            self.made = True
        try:
            await self.storage.jetstream().publish(
                f"{self.base}.probe", b"", stream=self.name, timeout=self.storage.probe_timeout
            )
        except Exception:
            return False
        self.suspect = False
        return True


class _Blobs:
    """The BlobNode operations over one stream."""

    name: str
    _stream: _Stream
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

    def __init__(self, name: str, stream: _Stream) -> None:
        self.name = name
        self._stream = stream
        self.stream = stream.name


class NatsReplicaSet(_Blobs):
    """A ReplicaSet: one stream JetStream replicates on `copies` servers."""

    # Through the leader: a follower may still hold the blob an overwrite replaced.
    _consistent = True

    def __init__(self, name: str, copies: int, stream: _Stream) -> None:
        self.name = name
        self.copies = copies
        self._stream = stream
        self.stream = stream.name


class NatsCatalog:
    """A Catalog: sealed manifests on a replicated stream, the last message per subject."""

    def __init__(self, stream: _Stream) -> None:
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
        stream = _Stream(self, *self.layout.stream(f"n-{check_name('node', name)}"), 1)
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
        stream = _Stream(self, *self.layout.stream(f"r-{name}"), copies)
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
        stream = _Stream(self, *self.layout.stream("cat"), replicas)
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
