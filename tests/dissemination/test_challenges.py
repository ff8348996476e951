"""Pending challenges: nobody's challenge or wrong answer denies another's admission, and
asking leaves no record behind (they expire, and are bounded per requester and in all)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from meterseal.deployment import init_deployment
from meterseal.dissemination.admission import AdmissionRequest
from meterseal.dissemination.authority import Authority
from meterseal.dissemination.challenges import MAX_PER_REQUESTER, PendingChallenges
from meterseal.dissemination.errors import AdmissionRefused, Reason
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.lifecycle import State
from meterseal.dissemination.nats_transport import serve_node
from meterseal.dissemination.node import RouterNode
from meterseal.dissemination.subscription import Subscription
from meterseal.runtime.nats_endpoint import connect
from tests.dissemination.conftest import NOW, World, make_world, measurement_of
from tests.nats_server import running_nats

HIGH = PrivacyLevel.HIGH
TTL = 60.0


@contextlib.asynccontextmanager
async def _served(server: Any, namespace: str, world: World) -> AsyncIterator[tuple[Any, Any]]:
    """The world's router node served over NATS, and the aggregator's and a stranger's
    connections (each its own certificate), closed after."""
    node = RouterNode(world.authority, world.router, b"o" * 32, os.urandom, namespace=namespace)
    router = await connect(server.url("router"), connect_timeout=3)
    aggregator = await connect(server.url("aggregator"), connect_timeout=3)
    stranger = await connect(server.url("stranger"), connect_timeout=3)
    try:
        await serve_node(router, node)
        yield aggregator, stranger
    finally:
        for nc in (stranger, aggregator, router):
            await nc.close()


def _request(world: World, name: str, nonce: bytes) -> AdmissionRequest:
    client = world.client(name, Role.AGGREGATOR)
    return client.request(
        nonce, ((HIGH, Subscription()),), attester=world.attester,
        measurement=measurement_of(Role.AGGREGATOR),
    )  # fmt: skip


def _reason(call: object) -> Reason:
    assert callable(call)
    with pytest.raises(AdmissionRefused) as refused:
        call()
    return refused.value.reason


def test_a_challenge_for_a_waiting_member_does_not_replace_its_nonce(world: World) -> None:
    authority = world.authority
    nonce = authority.challenge("agg", now=NOW)
    for _ in range(5):  # anyone on the bus, asking for the same name
        authority.challenge("agg", now=NOW)
    authority.admit(_request(world, "agg", nonce), now=NOW)
    assert authority.members["agg"].state is State.ADMITTED
    assert len(authority.challenges) == 0  # the others can no longer win: forgotten


def test_a_wrong_answer_does_not_spend_another_requesters_nonce(world: World) -> None:
    authority = world.authority
    nonce = authority.challenge("agg", now=NOW)
    guessed = _request(world, "agg", b"\x07" * 32)
    assert _reason(lambda: authority.admit(guessed, now=NOW)) is Reason.UNKNOWN_CHALLENGE
    own = authority.challenge("agg", now=NOW)  # answered with a bad quote
    forged = dataclasses.replace(_request(world, "agg", own), public_key=b"\x01" * 32)
    assert _reason(lambda: authority.admit(forged, now=NOW)) is Reason.KEY_NOT_BOUND
    authority.admit(_request(world, "agg", nonce), now=NOW)
    assert authority.members["agg"].state is State.ADMITTED


def test_a_member_must_still_answer_its_own_nonce_with_its_own_key(world: World) -> None:
    authority = world.authority
    nonce = authority.challenge("agg", now=NOW, requester="a")
    other = authority.challenge("agg", now=NOW, requester="b")
    swapped = dataclasses.replace(_request(world, "agg", nonce), nonce=other)
    assert _reason(lambda: authority.admit(swapped, now=NOW)) is Reason.ATTESTATION_FAILED
    stolen = dataclasses.replace(_request(world, "agg", nonce), public_key=b"\x02" * 32)
    assert _reason(lambda: authority.admit(stolen, now=NOW)) is Reason.KEY_NOT_BOUND
    assert "agg" not in authority.members
    assert _reason(lambda: authority.admit(_request(world, "agg", nonce), now=NOW)) is (
        Reason.UNKNOWN_CHALLENGE  # spent by the refused request that carried it
    )


def test_challenges_leave_no_record_and_expire_on_the_clock(world: World) -> None:
    authority = world.authority
    for index in range(MAX_PER_REQUESTER):
        authority.challenge(f"name-{index}", now=NOW, requester="one")
    assert authority.members == {}
    assert len(authority.challenges) == MAX_PER_REQUESTER
    assert _reason(lambda: authority.challenge("more", now=NOW, requester="one")) is (
        Reason.TOO_MANY_CHALLENGES
    )
    late = NOW + TTL + 1
    nonce = authority.challenge("agg", now=late, requester="one")  # the old ones swept
    assert len(authority.challenges) == 1
    assert authority.challenges.held("one") == 1
    assert _reason(lambda: authority.admit(_request(world, "agg", nonce), now=late + TTL + 1)) is (
        Reason.EXPIRED_CHALLENGE
    )


def test_pending_challenges_are_bounded_per_requester_and_in_all(world: World) -> None:
    pending = PendingChallenges(TTL, per_requester=3, total=5)
    authority = Authority(
        "utility", world.authority.signing_key, None, world.authority.policy, world.router,
        rng=os.urandom, pending=pending,
    )  # fmt: skip
    for index in range(3):
        authority.challenge(f"a{index}", now=NOW, requester="a")
    assert _reason(lambda: authority.challenge("a3", now=NOW, requester="a")) is (
        Reason.TOO_MANY_CHALLENGES
    )
    for index in range(2):
        authority.challenge(f"b{index}", now=NOW, requester="b")
    full = _reason(lambda: authority.challenge("c0", now=NOW, requester="c"))
    assert full is Reason.TOO_MANY_CHALLENGES  # the same answer for either bound
    assert len(pending) == 5
    authority.challenge("c0", now=NOW + TTL + 1, requester="c")
    assert len(pending) == 1


def test_a_flood_of_names_is_refused_and_counted_by_the_node(world: World) -> None:
    node = RouterNode(world.authority, world.router, b"o" * 32, os.urandom, namespace="t")
    answers = [cbor2.loads(node.on_challenge(f"n{i}".encode(), now=NOW)) for i in range(100)]
    issued = [a for a in answers if a["ok"]]
    refused = [a for a in answers if not a["ok"]]
    assert len(issued) == MAX_PER_REQUESTER
    assert {a["reason"] for a in refused} == {Reason.TOO_MANY_CHALLENGES.value}
    assert world.authority.members == {}
    assert world.router.counters["refused_too_many_challenges"] == 100 - MAX_PER_REQUESTER
    assert not cbor2.loads(node.on_admit(b"\xff", now=NOW))["ok"]
    assert world.router.counters["refused_malformed_request"] == 1


@pytest.mark.services
def test_over_nats_another_certificate_holder_cannot_deny_an_admission(
    tmp_path: Path, unique_name: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    deployment = init_deployment(tmp_path / "deployment", now=now)
    with running_nats(deployment, ["router", "aggregator", "stranger"], now=now) as server:

        async def scenario() -> None:
            world = make_world()
            async with _served(server, unique_name, world) as (victim, stranger):

                async def ask(nc: Any, kind: str, data: bytes) -> dict[str, Any]:
                    message = await nc.request(f"{unique_name}.{kind}", data, timeout=5)
                    return dict(cbor2.loads(message.data))

                nonce = (await ask(victim, "challenge", b"agg"))["nonce"]
                flood = [await ask(stranger, "challenge", b"agg") for _ in range(5)]
                flood += [await ask(stranger, "challenge", f"n{i}".encode()) for i in range(40)]
                assert sum(a["ok"] for a in flood) == MAX_PER_REQUESTER
                guess = _request(world, "agg", os.urandom(32)).encode()
                assert (await ask(stranger, "admit", guess))["reason"] == "unknown_challenge"
                answer = await ask(victim, "admit", _request(world, "agg", nonce).encode())
                assert answer["ok"], answer
                assert list(world.authority.members) == ["agg"]
                refused = world.router.counters["refused_too_many_challenges"]
                assert refused == len(flood) - MAX_PER_REQUESTER
                assert len(world.authority.challenges) == MAX_PER_REQUESTER - 5

        asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.services
def test_over_nats_clients_with_an_inbox_per_request_are_not_one_requester(
    tmp_path: Path, unique_name: str
) -> None:
    # nats-py's old-style requests (and other clients' unique inboxes) reply to _INBOX.<nuid>,
    # no per-request token after it: less its last token, every such client was "_INBOX", so
    # one client's 16 pending challenges refused every other such client's.
    now = dt.datetime.now(dt.UTC)
    deployment = init_deployment(tmp_path / "deployment", now=now)
    with running_nats(deployment, ["router", "aggregator", "stranger"], now=now) as server:

        async def scenario() -> None:
            world = make_world()
            async with _served(server, unique_name, world) as (member, other):

                async def ask(nc: Any, name: bytes) -> dict[str, Any]:
                    subject = f"{unique_name}.challenge"
                    message = await nc.request(subject, name, timeout=5, old_style=True)
                    return dict(cbor2.loads(message.data))

                for index in range(MAX_PER_REQUESTER):
                    assert (await ask(other, f"n{index}".encode()))["ok"]
                answer = await ask(member, b"agg")
                assert answer["ok"], answer
                request = _request(world, "agg", answer["nonce"]).encode()
                message = await member.request(f"{unique_name}.admit", request, timeout=5)
                assert cbor2.loads(message.data)["ok"]

        asyncio.run(asyncio.wait_for(scenario(), 60))
