"""One JetStream stream of the secure KVS: blobs split into parts by name, read and written.

A blob lives under ``<base>.<name>.<part>``; a message holds at most the server's
``max_payload`` less 1 KiB, so a larger blob is split, and part 0, which names the count and
size in its headers, is written last: a blob whose part 0 is there is whole. Reads of a
single-replica stream go to its server (direct get); reads of a replicated one through the
stream leader (a follower may lag behind an overwrite or a delete), and to any replica while
there is no leader. Writes and deletes of a replicated stream need its leader: one that lost
its leader is asked again until the remaining replicas elect one or `ELECTION_WAIT` passes,
once for a whole blob's write (its parts and part 0 share the wait); so is a replicated
stream's creation whose answer did not come (making it again as configured is a no-op).
`NatsStorage` (kvs/nats_nodes.py) makes the streams.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from meterseal.errors import KvsError

if TYPE_CHECKING:
    from meterseal.kvs.nats_nodes import NatsStorage

PARTS = "Ms-Parts"
SIZE = "Ms-Size"
# JetStream stores a message whose id it saw in the last 2 minutes (the stream's duplicate
# window) only once: a write asked again after a timeout cannot put back an old blob.
MSG_ID = "Nats-Msg-Id"
LEADERLESS_PAUSE = 5.0  # seconds consistent reads go to any replica after the leader failed
# Seconds a blob's write (all its parts) or a delete of a replicated stream that lost its
# leader waits for a new one: nats-server's Raft elects one within its election timeout (4 to
# 9 s), later under load.
ELECTION_WAIT = 20.0
# JetStream's 503 "system temporarily unavailable" (its meta group has no leader yet): of its
# 503 refusals of a stream's creation, the one an election ends (not: no JetStream, none for
# the account, no resources).
CLUSTER_UNAVAILABLE = 10008


class NatsStream:
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
        from nats.js.errors import BadRequestError, ServiceUnavailableError

        self.tags = tags

        config = StreamConfig(
            name=self.name,
            subjects=[f"{self.base}.>"],
            num_replicas=self.replicas,
            placement=Placement(tags=list(tags)) if tags else None,
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            allow_direct=True,
        )
        manager = self.storage.manager()

        async def create() -> None:
            try:
                await manager.add_stream(config)
            except ServiceUnavailableError as exc:
                if exc.err_code == CLUSTER_UNAVAILABLE:
                    raise
                # Nothing answered (nats-py's no responders, without a code: no JetStream on
                # the server) or JetStream refused for good (not enabled for the account, no
                # resources): no election to wait for.
                none = exc.code is None
                hint = " (is JetStream enabled on its server?)" if none else ""
                raise self._error(f"cannot be made{hint}", exc) from None

        try:
            # Making a stream with the configuration it has is a no-op, so a create whose
            # answer was lost (a replicated stream's on a loaded cluster: its leader was up
            # within a second, the reply missed the client's timeout) is simply asked again.
            await self._elected(create)
        except BadRequestError as exc:
            raise self._error("cannot be made as configured", exc) from None
        except KvsError:
            raise
        except Exception as exc:
            raise self._error("cannot be made (is its server up?)", exc) from None

    async def write(self, name: str, data: bytes) -> None:
        """Publish `data` under `name` (split into parts, part 0 last); durable when acked."""
        size = self.storage.part_size
        count = max(1, -(-len(data) // size))
        js = self.storage.jetstream()
        write_id = secrets.token_hex(16)  # the same on every retry of this write's parts
        # One wait for a leader for the blob, not one per step: part 0 after parts that waited
        # gets what is left, so a leader lost again cannot make the write wait twice as long.
        deadline = self.storage.clock() + self.storage.election_wait

        async def publish(index: int) -> None:
            headers = {MSG_ID: f"{write_id}.{index}"}
            if index == 0:
                headers.update({PARTS: str(count), SIZE: str(len(data))})
            piece = data[index * size : (index + 1) * size]
            subject = f"{self.base}.{name}.{index}"
            await self._elected(
                lambda: js.publish(subject, piece, stream=self.name, headers=headers), deadline
            )

        try:
            # A part that fails cancels the others: one left retrying would be stored after
            # the store gave the blob up, a part without part 0 that nothing lists or sweeps.
            async with asyncio.TaskGroup() as parts:
                for index in range(1, count):
                    parts.create_task(publish(index))
            await publish(0)
        except Exception as exc:
            first = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
            raise self._error(f"write of {name}", first) from None

    async def _elected(
        self, request: Callable[[], Awaitable[object]], deadline: float | None = None
    ) -> None:
        """Make `request` (a write, a delete or the stream's creation, the same when repeated);
        while a replicated stream has no leader to take it, make it again until one is elected
        or the clock reaches `deadline` (`election_wait` from now by default).

        A request that timed out may have been taken: a write repeated carries its first
        message id, so JetStream drops it rather than undo a newer write of the same name."""
        from nats.errors import NoRespondersError
        from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

        leaderless = (NoStreamResponseError, NoRespondersError, ServiceUnavailableError)
        storage = self.storage
        if deadline is None:
            deadline = storage.clock() + storage.election_wait
        pause = 0.1
        while True:
            try:
                await request()
                return
            except (*leaderless, TimeoutError):
                # A single-replica stream's server is down; no leader elected in time: fail.
                if self.replicas == 1 or storage.clock() >= deadline:
                    raise
            await storage.sleep(pause)
            pause = min(2 * pause, 1.0)

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
        js = self.storage.jetstream()
        try:
            await self._elected(lambda: js.purge_stream(self.name, subject=f"{self.base}.{name}.>"))
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
