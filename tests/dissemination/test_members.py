"""This checkout's member measurements: what `router` members attest with, whom serve admits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from meterseal.dissemination.authority import Authority
from meterseal.dissemination.cli_serve import _allow
from meterseal.dissemination.errors import DisseminationError
from meterseal.dissemination.inproc import LocalNetwork
from meterseal.dissemination.levels import Role
from meterseal.dissemination.member import MemberClient
from meterseal.dissemination.router import Router
from meterseal.dissemination.service import admission_policy, default_allow, member_measurement
from meterseal.trust.attestation import SimulatedAttester, SimulatedVerifier
from tests.command_line import invoke

NOW = 1_793_000_000.0


def test_each_role_has_its_own_stable_measurement() -> None:
    measured = {role: member_measurement(role) for role in Role if role is not Role.PUBLIC_APP}
    assert len(set(measured.values())) == len(measured)
    member_measurement.cache_clear()
    assert member_measurement(Role.PUBLISHER) == measured[Role.PUBLISHER]


def test_router_init_prints_every_id_the_next_commands_need(tmp_path: Path) -> None:
    result = invoke(["router", "init", str(tmp_path / "router")])
    assert result.exit_code == 0, result.output
    public = (tmp_path / "router" / "authority.pub").read_text().strip()
    assert public in result.output
    assert f"--authority {tmp_path / 'router' / 'authority.pub'}" in result.output
    for role in (Role.PUBLISHER, Role.AGGREGATOR, Role.UTILITY, Role.APP):
        assert member_measurement(role).hex in result.output
    assert "--allow utility" in result.output
    listed = invoke(["router", "members"])
    assert member_measurement(Role.PUBLISHER).hex in listed.output


def test_allow_takes_a_role_alone_or_with_a_measurement() -> None:
    other = "ab" * 32
    rules = _allow(["utility", f"app={other}"])
    assert rules[0] == (Role.UTILITY, member_measurement(Role.UTILITY))
    assert rules[1][0] is Role.APP
    assert rules[1][1].hex == other
    with pytest.raises(Exception, match="ROLE or ROLE=MEASUREMENT"):
        _allow(["nobody"])


def _network() -> tuple[LocalNetwork, SimulatedAttester]:
    platform = ed25519.Ed25519PrivateKey.generate()
    router = Router()
    authority = Authority(
        "utility", ed25519.Ed25519PrivateKey.generate(), SimulatedVerifier(platform.public_key()),
        admission_policy(default_allow()), router, rng=os.urandom,
    )  # fmt: skip
    return LocalNetwork(authority, router), SimulatedAttester(platform)


def test_the_default_rules_admit_this_checkouts_publisher_and_aggregator_only() -> None:
    network, attester = _network()
    public = network.authority.public_key
    for name, role in (("headend", Role.PUBLISHER), ("agg", Role.AGGREGATOR)):
        client = MemberClient(name, role, "utility", public)
        network.join(client, (), now=NOW, attester=attester, measurement=member_measurement(role))
        assert client.keys is not None
    reader = MemberClient("reader", Role.UTILITY, "utility", public)
    with pytest.raises(DisseminationError, match="measurement_not_allowed") as refused:
        network.join(
            reader, (), now=NOW, attester=attester, measurement=member_measurement(Role.UTILITY)
        )
    assert "`router serve --allow utility`" in str(refused.value)  # says how to admit it
