"""A replicated stream's writes and deletes wait out a leader election; a node's do not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest
from nats.errors import NoRespondersError
from nats.js.errors import BadRequestError, NoStreamResponseError, ServiceUnavailableError

from meterseal.errors import KvsError
from meterseal.kvs.nats_stream import ELECTION_WAIT, NatsStream


class _JetStream:
    """Answers each request with the next of `failures`, then takes it."""

    def __init__(self, failures: list[BaseException] | None = None, forever: bool = False) -> None:
        self.failures = failures or []
        self.forever = forever
        self.taken: list[str] = []

    def _answer(self, subject: str) -> None:
        if self.forever:
            raise NoStreamResponseError
        if self.failures:
            raise self.failures.pop(0)
        self.taken.append(subject)

    async def publish(self, subject: str, payload: bytes, **_: object) -> None:
        self._answer(subject)

    async def purge_stream(self, name: str, subject: str) -> None:
        self._answer(subject)


class _Manager:
    """Stream creation that answers with the next of `failures`, then makes the stream."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures, self.made = failures, 0

    async def add_stream(self, config: object) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.made += 1


class _Storage:
    """The parts of NatsStorage a stream uses, on a clock that moves only when it sleeps."""

    part_size = 1024
    election_wait = ELECTION_WAIT

    def __init__(self, js: _JetStream, manage: _Manager | None = None) -> None:
        self.js, self.now, self.slept = js, 0.0, 0
        self.manage = manage or _Manager([])

    def jetstream(self) -> _JetStream:
        return self.js

    def clock(self) -> float:
        return self.now

    def manager(self) -> _Manager:
        return self.manage

    async def sleep(self, seconds: float) -> None:
        self.slept += 1
        self.now += seconds


def _stream(
    js: _JetStream, replicas: int, manager: _Manager | None = None
) -> tuple[NatsStream, _Storage]:
    storage = _Storage(js, manager)
    return NatsStream(cast(Any, storage), "KVS_t_cat", "kvs.t.cat", replicas), storage


LEADERLESS = [
    NoStreamResponseError(),
    NoRespondersError(),
    ServiceUnavailableError(),
    TimeoutError(),
]


def test_a_write_to_a_replicated_stream_waits_for_its_new_leader() -> None:
    js = _JetStream(list(LEADERLESS))
    stream, storage = _stream(js, 3)
    asyncio.run(stream.write("b1.k1", b"sealed"))
    assert js.taken == ["kvs.t.cat.b1.k1.0"]
    assert storage.slept == len(LEADERLESS)


def test_a_delete_of_a_replicated_stream_waits_for_its_new_leader() -> None:
    js = _JetStream([NoStreamResponseError(), TimeoutError()])
    stream, _ = _stream(js, 3)
    asyncio.run(stream.purge("b1.k1"))
    assert js.taken == ["kvs.t.cat.b1.k1.>"]


def test_no_leader_elected_within_the_wait_fails_the_write() -> None:
    stream, storage = _stream(_JetStream(forever=True), 3)
    with pytest.raises(KvsError, match=r"write of b1\.k1: nats: no response from stream"):
        asyncio.run(stream.write("b1.k1", b"sealed"))
    assert storage.now >= ELECTION_WAIT


@pytest.mark.parametrize("failure", LEADERLESS, ids=lambda e: type(e).__name__)
def test_a_node_whose_server_is_down_fails_at_once(failure: BaseException) -> None:
    js = _JetStream([failure])
    stream, storage = _stream(js, 1)
    with pytest.raises(KvsError, match=r"write of b1\.k1"):
        asyncio.run(stream.write("b1.k1", b"sealed"))
    assert storage.slept == 0
    assert js.taken == []


def test_a_refused_write_is_not_asked_again() -> None:
    js = _JetStream([BadRequestError()])
    stream, storage = _stream(js, 3)
    with pytest.raises(KvsError, match=r"write of b1\.k1"):
        asyncio.run(stream.write("b1.k1", b"sealed"))
    assert storage.slept == 0


class _LeaderLostAgain(_JetStream):
    """No leader for 15 s; the one elected takes part 1 and is lost before part 0, which
    finds none until 30 s (on the storage's clock)."""

    clock: Callable[[], float]

    async def publish(self, subject: str, payload: bytes, **_: object) -> None:
        if self.clock() < (30.0 if subject.endswith(".0") else 15.0):
            raise NoStreamResponseError
        self.taken.append(subject)


def test_the_parts_and_part_0_of_a_blob_wait_for_leaders_once_in_all() -> None:
    js = _LeaderLostAgain()
    stream, storage = _stream(js, 3)
    js.clock = storage.clock
    with pytest.raises(KvsError, match=r"write of b1\.k1: nats: no response from stream"):
        asyncio.run(stream.write("b1.k1", bytes(2 * storage.part_size)))
    assert js.taken == ["kvs.t.cat.b1.k1.1"]  # part 0 had only what part 1 left of the wait
    assert storage.now < ELECTION_WAIT + 1.0  # at most one pause (1 s) past it


class _Deduplicating:
    """One message per subject, a message id stored once (JetStream's duplicate window); the
    first publish is stored and its acknowledgement lost, and another writer then writes."""

    def __init__(self) -> None:
        self.messages: dict[str, bytes] = {}
        self.seen: set[str] = set()
        self.lost_ack = True

    async def publish(
        self, subject: str, payload: bytes, *, headers: dict[str, str] | None, **_: object
    ) -> None:
        msg_id = (headers or {}).get("Nats-Msg-Id")
        if msg_id is not None and msg_id in self.seen:
            return  # a duplicate: acknowledged, not stored
        if msg_id is not None:
            self.seen.add(msg_id)
        self.messages[subject] = payload
        if self.lost_ack:
            self.lost_ack = False
            raise TimeoutError


def test_a_write_asked_again_after_a_timeout_does_not_undo_a_newer_write() -> None:
    js = _Deduplicating()
    stream, storage = _stream(cast(Any, js), 3)

    async def other_writer(seconds: float) -> None:  # while the first writer waits
        js.messages["kvs.t.cat.b1.k1.0"] = b"newer"

    storage.sleep = other_writer  # type: ignore[method-assign]
    asyncio.run(stream.write("b1.k1", b"older"))
    assert js.messages == {"kvs.t.cat.b1.k1.0": b"newer"}


class _Parts(_JetStream):
    """Refuses part 1 at once; part 2 finds no leader twice, then is taken."""

    def __init__(self) -> None:
        super().__init__()
        self.leaderless = 2

    async def publish(self, subject: str, payload: bytes, **_: object) -> None:
        if subject.endswith(".1"):
            raise BadRequestError()
        if subject.endswith(".2") and self.leaderless:
            self.leaderless -= 1
            raise NoStreamResponseError
        self.taken.append(subject)


class _YieldingStorage(_Storage):
    """A sleep that lets the other tasks run, as a real one does."""

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        await asyncio.sleep(0)


def test_a_part_refused_cancels_the_parts_still_waiting_for_a_leader() -> None:
    js = _Parts()
    storage = _YieldingStorage(js)
    stream = NatsStream(cast(Any, storage), "KVS_t_rep", "kvs.t.rep", 3)

    async def scenario() -> None:
        with pytest.raises(KvsError, match=r"write of b1\.k1: "):
            await stream.write("b1.k1", bytes(3 * storage.part_size))
        for _ in range(10):  # what would still run of the write gets its turns
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert js.taken == []  # part 2, left retrying, would be stored with no part 0


def test_a_replicated_stream_whose_creation_got_no_answer_is_made_again() -> None:
    # On a loaded cluster the create's reply can miss the client's timeout while the stream
    # is made; asked again with the same configuration it is found as it is.
    manager = _Manager([TimeoutError(), NoStreamResponseError()])
    stream, storage = _stream(_JetStream(), 3, manager)
    asyncio.run(stream.ensure())
    assert manager.made == 1
    assert storage.slept == 2


def test_a_node_stream_whose_server_does_not_answer_is_not_made() -> None:
    manager = _Manager([TimeoutError()])
    stream, storage = _stream(_JetStream(), 1, manager)
    with pytest.raises(KvsError, match="cannot be made"):
        asyncio.run(stream.ensure())
    assert manager.made == 0
    assert storage.slept == 0


def test_a_stream_configured_otherwise_is_refused_without_waiting() -> None:
    manager = _Manager([BadRequestError()])
    stream, storage = _stream(_JetStream(), 3, manager)
    with pytest.raises(KvsError, match="cannot be made as configured"):
        asyncio.run(stream.ensure())
    assert storage.slept == 0


# What nats-py raises when nothing answers the JetStream API (no responders: a server
# without JetStream), and a cluster's refusal for good, against its meta group's election.
_NO_JETSTREAM = ServiceUnavailableError()
_NOT_FOR_ACCOUNT = ServiceUnavailableError(503, "JetStream not enabled for account", 10039)
_ELECTING = ServiceUnavailableError(503, "JetStream system temporarily unavailable", 10008)


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (_NO_JETSTREAM, r" \(is JetStream enabled on its server\?\): nats: Service"),
        (_NOT_FOR_ACCOUNT, ": nats: ServiceUnavailableError: code=503 err_code=10039 "),
    ],
    ids=["none", "account"],
)
def test_a_replicated_stream_jetstream_will_not_make_is_refused_without_waiting(
    refusal: ServiceUnavailableError, reason: str
) -> None:
    # A gateway pointed at servers without JetStream waited 20 s a replicated stream (four
    # replica sets and the catalog: 100 s) for the answer it had at once.
    manager = _Manager([refusal])
    stream, storage = _stream(_JetStream(), 3, manager)
    with pytest.raises(KvsError, match=f"KVS_t_cat: cannot be made{reason}"):
        asyncio.run(stream.ensure())
    assert manager.made == 0
    assert storage.slept == 0


def test_a_replicated_stream_is_made_once_the_cluster_elected_its_meta_leader() -> None:
    manager = _Manager([_ELECTING, _ELECTING])
    stream, storage = _stream(_JetStream(), 3, manager)
    asyncio.run(stream.ensure())
    assert manager.made == 1
    assert storage.slept == 2
