"""The router as a service on NATS: admission, routing, consent, removal and bad input."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2
import pytest

from meterseal.dissemination.errors import AdmissionRefused, Reason
from meterseal.dissemination.frames import Link
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import MemberClient, Publisher
from meterseal.dissemination.nats_transport import NatsMember, operator_request, serve_node
from meterseal.dissemination.node import RouterNode, operator_command
from meterseal.dissemination.subscription import parse
from meterseal.dissemination.wire import pairs
from tests.dissemination.conftest import CUSTOMERS, World, make_world, measurement_of, reading
from tests.services import require_service

pytestmark = pytest.mark.services
NATS_URL = os.environ.get("MS_NATS_URL", "nats://127.0.0.1:4222")
HIGH, LOW = PrivacyLevel.HIGH, PrivacyLevel.LOW
OPERATOR = b"o" * 32


async def _connect() -> Any:
    import nats

    return await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)


@pytest.fixture
def nats_up() -> None:
    async def probe() -> None:
        nc = await _connect()
        await nc.close()

    require_service("NATS", NATS_URL, lambda: asyncio.run(probe()))


@pytest.fixture
def namespace(nats_up: None, unique_name: str) -> str:
    """Subjects of this test's own (once NATS answers)."""
    return f"test.dissem.{unique_name}"


def _router_node(world: World, namespace: str) -> RouterNode:
    return RouterNode(world.authority, world.router, OPERATOR, os.urandom, namespace=namespace)


def _run(scenario: Callable[[World, RouterNode, Any], Awaitable[None]], namespace: str) -> None:
    async def main() -> None:
        world = make_world()
        node = _router_node(world, namespace)
        service = await _connect()
        members = await _connect()
        try:
            await serve_node(service, node)
            await scenario(world, node, members)
        finally:
            await members.close()
            await service.close()

    asyncio.run(main())


async def _join(
    world: World, node: RouterNode, nc: Any, name: str, role: Role, *subs: tuple[Any, str]
) -> tuple[NatsMember, list[Any]]:
    inbox: list[Any] = []

    async def deliver(elements: list[bytes]) -> None:
        inbox.extend(pairs(elements))

    member = NatsMember(nc, world.client(name, role), namespace=node.namespace)
    await member.join(
        tuple((lv, parse(text)) for lv, text in subs),
        on_delivery=deliver,
        attester=world.attester if role is not Role.PUBLIC_APP else None,
        measurement=measurement_of(role),
    )
    return member, inbox


async def _settle(nc: Any) -> None:
    await nc.flush()
    await asyncio.sleep(0.1)


def test_publications_flow_through_nats_with_consent_and_removal(namespace: str) -> None:
    async def scenario(world: World, node: RouterNode, nc: Any) -> None:
        headend_member, _ = await _join(world, node, nc, "headend", Role.PUBLISHER)
        headend = Publisher("headend", headend_member.client.keys, rng=os.urandom)
        agg, agg_inbox = await _join(world, node, nc, "agg", Role.AGGREGATOR, (HIGH, ""))
        app, app_inbox = await _join(world, node, nc, "app", Role.APP, (HIGH, ""))
        command = operator_command(
            OPERATOR, {"op": "grant", "customer": CUSTOMERS[0], "app": "app"},
            now=time.time(), nonce=b"1",
        )  # fmt: skip
        answer = await operator_request(nc, command, namespace=node.namespace)
        assert answer == {"ok": True, "rekeyed": ["app"]}
        await _settle(nc)
        await headend_member.send([e for c in CUSTOMERS for e in reading(headend, c, 0, 7)])
        await headend_member.drain()
        await _settle(nc)
        assert [agg.client.open(i).values for i in agg_inbox] == [{"wh": 7}] * 3
        assert [app.client.open(i).header.customer for i in app_inbox] == [CUSTOMERS[0]]
        replayed = await operator_request(nc, command, namespace=node.namespace)
        assert replayed["reason"] == Reason.BAD_OPERATOR_COMMAND.value
        remove = operator_command(
            OPERATOR, {"op": "remove", "member": "app"}, now=time.time(), nonce=b"2"
        )
        assert (await operator_request(nc, remove, namespace=node.namespace))["ok"]
        await _settle(nc)
        app_inbox.clear()
        await headend_member.send(reading(headend, CUSTOMERS[0], 900, 8))
        await headend_member.drain()
        await _settle(nc)
        assert app_inbox == []
        assert len(agg_inbox) == 4
        assert agg.client.can_open(agg_inbox[-1])
        assert headend_member.counters["handouts"] >= 1  # the customer epoch moved on

    _run(scenario, namespace)


def test_bad_input_over_nats_is_refused_and_the_router_stays_up(namespace: str) -> None:
    async def scenario(world: World, node: RouterNode, nc: Any) -> None:
        agg, agg_inbox = await _join(world, node, nc, "agg", Role.AGGREGATOR, (HIGH, ""))
        headend_member, _ = await _join(world, node, nc, "headend", Role.PUBLISHER)

        async def ask(subject: str, data: bytes) -> dict[str, Any]:
            message = await nc.request(f"{node.namespace}.{subject}", data, timeout=5)
            return dict(cbor2.loads(message.data))

        assert (await ask("challenge", b"bad name!"))["reason"] == "malformed_request"
        assert (await ask("admit", b"\xff"))["reason"] == "malformed_request"
        assert (await ask("pub.stranger", b"x"))["reason"] == "unknown_link"
        assert (await ask("pub.headend", b"\x00garbage"))["reason"] == "malformed_frame"
        forged = Link(os.urandom(32)).seal(f"{node.namespace}.pub.headend", [], os.urandom)
        assert (await ask("pub.headend", forged))["reason"] == "malformed_frame"
        assert (await ask("op", cbor2.dumps([b"x", b"y"])))["reason"] == "bad_operator_command"
        sneaky = MemberClient("sneaky", Role.APP, "utility", world.authority.public_key)
        with pytest.raises(AdmissionRefused) as refused:
            await NatsMember(nc, sneaky, namespace=node.namespace).join(((HIGH, parse("")),))
        assert refused.value.reason is Reason.ATTESTATION_FAILED
        headend = Publisher("headend", headend_member.client.keys, rng=os.urandom)
        good = reading(headend, CUSTOMERS[1], 0, 3)
        await headend_member.send([*good, b"junk", good[1], b"odd one out"])
        await headend_member.drain()
        await _settle(nc)
        assert headend_member.refused == [
            [1, "malformed_publication"],
            [2, "malformed_publication"],
        ]
        assert [agg.client.open(i).values for i in agg_inbox] == [{"wh": 3}]

    _run(scenario, namespace)


def test_a_member_waits_briefly_for_a_router_that_is_starting(namespace: str) -> None:
    async def main() -> None:
        world = make_world()
        node = _router_node(world, namespace)
        service, members = await _connect(), await _connect()
        try:
            joining = asyncio.create_task(
                _join(world, node, members, "agg", Role.AGGREGATOR, (HIGH, ""))
            )
            await asyncio.sleep(0.2)  # the member asks before anyone answers
            await serve_node(service, node)
            member, _ = await joining
            assert member.link is not None
            assert member.counters["no_responders"] >= 1
        finally:
            await members.close()
            await service.close()

    asyncio.run(main())


def test_a_member_gives_up_when_no_router_answers(namespace: str) -> None:
    from nats.errors import NoRespondersError

    async def main() -> None:
        world = make_world()
        nc = await _connect()
        try:
            member = NatsMember(nc, world.client("agg", Role.AGGREGATOR), namespace=namespace)
            with pytest.raises(NoRespondersError):
                await member.join(((HIGH, parse("")),))
            assert member.counters["no_responders"] == 5
        finally:
            await nc.close()

    asyncio.run(main())
