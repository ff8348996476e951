"""The dissemination transport over mutual TLS: the router serves and members join on TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import pytest

from meterseal.deployment import init_deployment
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.nats_transport import NatsMember, serve_node
from meterseal.dissemination.node import RouterNode
from meterseal.dissemination.subscription import parse
from meterseal.runtime.nats_endpoint import connect
from tests.dissemination.conftest import make_world, measurement_of
from tests.nats_server import running_nats

pytestmark = pytest.mark.services


def test_the_router_serves_and_a_member_joins_over_mutual_tls(
    tmp_path: Path, unique_name: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    deployment = init_deployment(tmp_path / "deployment", now=now)
    with running_nats(deployment, ["router", "aggregator"], now=now) as server:

        async def scenario() -> None:
            world = make_world()
            node = RouterNode(
                world.authority, world.router, b"o" * 32, os.urandom, namespace=unique_name
            )
            router = await connect(server.url("router"), connect_timeout=3)
            member_nc = await connect(server.url("aggregator"), connect_timeout=3)
            try:
                await serve_node(router, node)
                member = NatsMember(
                    member_nc, world.client("agg", Role.AGGREGATOR), namespace=unique_name
                )
                await member.join(
                    ((PrivacyLevel.HIGH, parse("")),),
                    attester=world.attester,
                    measurement=measurement_of(Role.AGGREGATOR),
                )
                assert member.link is not None
                assert "agg" in node.router.members()
            finally:
                await member_nc.close()
                await router.close()

        asyncio.run(asyncio.wait_for(scenario(), 60))
