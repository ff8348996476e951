"""The leakage matrix: per role, exactly which levels and customers it receives and can decrypt.

"Can decrypt" is tried on every publication, as if the transport leaked all ciphertext to
everyone; "receives" is what the router delivers.
"""

from __future__ import annotations

import pytest

from meterseal.dissemination.errors import AdmissionRefused, Reason
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import MemberClient, Publisher
from tests.dissemination.conftest import AT, CUSTOMERS, NOW, World, reading, seeded

A, B, C = CUSTOMERS
HIGH, MODERATE, LOW = PrivacyLevel.HIGH, PrivacyLevel.MODERATE, PrivacyLevel.LOW


def _moderate(aggregator: Publisher, customer: bytes) -> list[bytes]:
    return aggregator.seal(
        MODERATE, "customer_load", {"wh": 1}, at=AT, region="R01", customer=customer, start=0
    )


def _low(aggregator: Publisher) -> list[bytes]:
    return aggregator.seal(LOW, "regional_load", {"wh": 9}, at=AT, region="R01", start=0)


class Scenario:
    """Five roles admitted, customer A consenting to `consented` only."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.headend = world.publisher()
        self.roles: dict[str, MemberClient] = {
            "public app": world.join("public", Role.PUBLIC_APP, (LOW, "")),
            "utility": world.join("utility1", Role.UTILITY, (MODERATE, ""), (LOW, "")),
            "consented app": world.join("consented", Role.APP, (HIGH, ""), (LOW, "")),
            "unconsented app": world.join("unconsented", Role.APP, (HIGH, ""), (LOW, "")),
            "aggregator": world.join("agg", Role.AGGREGATOR, (HIGH, "")),
        }
        world.network.grant_consent(A, "consented", now=NOW)
        self.aggregator = Publisher("agg", self.roles["aggregator"].keys, rng=seeded(9))

    def publish_all(self, start: int = 0) -> dict[str, list[bytes]]:
        """One publication per (level, customer); routed; returns them by label."""
        for client in self.roles.values():
            self.world.network.take(client.name)  # only this round counts
        items = {f"high {c[0]}": reading(self.headend, c, start, 10) for c in CUSTOMERS}
        self.world.network.publish("headend", list(items.values()))
        more = {f"moderate {c[0]}": _moderate(self.aggregator, c) for c in CUSTOMERS}
        more["low"] = _low(self.aggregator)
        self.world.network.publish("agg", list(more.values()))
        return items | more

    def received(self, items: dict[str, list[bytes]]) -> dict[str, set[str]]:
        labels = {item[0]: label for label, item in items.items()}  # by header bytes
        return {
            role: {labels[i[0]] for i in self.world.network.take(client.name)}
            for role, client in self.roles.items()
        }

    def readable(self, items: dict[str, list[bytes]]) -> dict[str, set[str]]:
        return {
            role: {label for label, item in items.items() if client.can_open(item)}
            for role, client in self.roles.items()
        }


ALL_HIGH = {"high 1", "high 2", "high 3"}
ALL_MODERATE = {"moderate 1", "moderate 2", "moderate 3"}
EXPECTED_READABLE = {
    "public app": {"low"},
    "utility": ALL_MODERATE | {"low"},
    "consented app": {"high 1", "low"},
    "unconsented app": {"low"},
    "aggregator": ALL_HIGH | ALL_MODERATE | {"low"},  # it seals MODERATE and LOW itself
}
EXPECTED_RECEIVED = {
    "public app": {"low"},
    "utility": ALL_MODERATE | {"low"},
    "consented app": {"high 1", "low"},
    "unconsented app": {"low"},
    "aggregator": ALL_HIGH,
}


def test_each_role_receives_and_decrypts_exactly_its_share(world: World) -> None:
    scenario = Scenario(world)
    items = scenario.publish_all()
    assert scenario.received(items) == EXPECTED_RECEIVED
    assert scenario.readable(items) == EXPECTED_READABLE


def test_revoked_consent_stops_the_app_at_the_next_publication(world: World) -> None:
    scenario = Scenario(world)
    before = scenario.publish_all()
    world.network.revoke_consent(A, "consented", now=NOW)
    after = scenario.publish_all(start=900)
    received, readable = scenario.received(after), scenario.readable(after)
    assert received["consented app"] == {"low"}
    assert readable["consented app"] == {"low"}
    assert scenario.roles["consented app"].can_open(before["high 1"])  # the past stays readable
    assert readable["aggregator"] == EXPECTED_READABLE["aggregator"]
    assert received["aggregator"] == ALL_HIGH


def test_consent_granted_later_starts_at_the_next_publication(world: World) -> None:
    scenario = Scenario(world)
    world.network.grant_consent(B, "unconsented", now=NOW)
    items = scenario.publish_all()
    assert scenario.received(items)["unconsented app"] == {"high 2", "low"}
    assert scenario.readable(items)["unconsented app"] == {"high 2", "low"}


@pytest.mark.parametrize(
    ("role", "lost"),
    [
        ("utility", ALL_MODERATE | {"low"}),
        ("consented app", {"high 1", "low"}),
        ("public app", {"low"}),
    ],
)
def test_a_removed_member_gets_nothing_new(world: World, role: str, lost: set[str]) -> None:
    scenario = Scenario(world)
    name = scenario.roles[role].name
    world.network.remove(name, now=NOW)
    items = scenario.publish_all(start=900)
    received, readable = scenario.received(items), scenario.readable(items)
    assert received[role] == set()
    assert readable[role] == set()
    for other, expected in EXPECTED_READABLE.items():
        if other != role:
            assert readable[other] == expected, other  # the others were rekeyed
    assert lost  # what the removed member could read before


def test_removing_the_aggregator_rotates_high_for_everyone(world: World) -> None:
    scenario = Scenario(world)
    world.network.remove("agg", now=NOW)
    items = {f"high {c[0]}": reading(scenario.headend, c, 900, 10) for c in CUSTOMERS}
    world.network.publish("headend", list(items.values()))
    assert scenario.readable(items)["aggregator"] == set()
    assert scenario.readable(items)["consented app"] == {"high 1"}
    assert scenario.world.network.take("agg") == []


@pytest.mark.parametrize("role", [Role.APP, Role.UTILITY, Role.AGGREGATOR])
def test_an_unattested_member_is_refused_and_holds_nothing(world: World, role: Role) -> None:
    client = world.client("sneaky", role)
    level = {Role.APP: HIGH, Role.UTILITY: MODERATE, Role.AGGREGATOR: HIGH}[role]
    nonce = world.authority.challenge("sneaky", now=NOW)
    from meterseal.dissemination.subscription import Subscription

    request = client.request(nonce, ((level, Subscription()),))
    with pytest.raises(AdmissionRefused) as refused:
        world.authority.admit(request, now=NOW)
    assert refused.value.reason is Reason.ATTESTATION_FAILED
    assert client.keys.held() == set()
    headend = world.publisher()
    routed = world.network.publish("headend", [reading(headend, A, 0, 1)])
    assert "sneaky" not in routed.deliveries
