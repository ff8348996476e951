"""A dissemination deployment in memory: simulated attestation, an authority, a router, members.

Simulated attestation gives no hardware guarantee; here it keeps the protocol honest.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from meterseal.dissemination.authority import Authority, secret_name
from meterseal.dissemination.inproc import LocalNetwork
from meterseal.dissemination.levels import GRANTS, PrivacyLevel, Role
from meterseal.dissemination.member import MemberClient, Publisher
from meterseal.dissemination.router import Router
from meterseal.dissemination.subscription import Subscription, parse
from meterseal.trust.attestation import SimulatedAttester, SimulatedVerifier
from meterseal.trust.measurement import Measurement
from meterseal.trust.policy import AllowMeasurement, AnyOf

NOW = 1_793_000_000.0
AT = int(NOW * 1_000_000)
PUBLISHER = "utility"
CUSTOMERS = (b"\x01" * 16, b"\x02" * 16, b"\x03" * 16)
HOUR = 3600


def seeded(seed: int) -> Callable[[int], bytes]:
    """A reproducible byte source."""
    generator = random.Random(seed)
    return lambda n: generator.randbytes(n)


def measurement_of(role: Role) -> Measurement:
    """A stand-in code identity per role (what each role's worker would measure to)."""
    return Measurement(role.value.encode().ljust(32, b"\x00"))


def role_policy() -> AnyOf:
    """Each role's measurement may receive exactly its role's level keys."""
    rules = []
    for role in Role:
        names = frozenset(secret_name(role, lv) for (r, lv) in GRANTS if r is role)
        rules.append(AllowMeasurement(measurement_of(role), names, role.value))
    return AnyOf(tuple(rules))


@dataclass
class World:
    """A publisher's authority and router in one process, with a simulated platform."""

    network: LocalNetwork
    attester: SimulatedAttester
    platform_key: ed25519.Ed25519PrivateKey

    @property
    def authority(self) -> Authority:
        return self.network.authority

    @property
    def router(self) -> Router:
        return self.network.router

    def client(self, name: str, role: Role) -> MemberClient:
        return MemberClient(name, role, PUBLISHER, self.authority.public_key)

    def join(
        self,
        name: str,
        role: Role,
        *subscriptions: tuple[PrivacyLevel, str],
        attested: bool = True,
    ) -> MemberClient:
        """Admit a member of `role` whose quote carries its role's measurement."""
        client = self.client(name, role)
        subs = tuple((lv, parse(text)) for lv, text in subscriptions)
        self.network.join(
            client,
            subs,
            now=NOW,
            attester=self.attester if attested and role is not Role.PUBLIC_APP else None,
            measurement=measurement_of(role),
        )
        return client

    def publisher(self, name: str = "headend", role: Role = Role.PUBLISHER) -> Publisher:
        """An admitted publisher (the head-end's trusted stage by default)."""
        client = self.join(name, role)
        return Publisher(name, client.keys, rng=seeded(len(name)))


def make_world(seed: int = 1) -> World:
    """A fresh world (its own keys, platform and router)."""
    platform_key = ed25519.Ed25519PrivateKey.generate()
    router = Router()
    authority = Authority(
        PUBLISHER,
        ed25519.Ed25519PrivateKey.generate(),
        SimulatedVerifier(platform_key.public_key()),
        role_policy(),
        router,
        rng=seeded(seed),
    )
    return World(LocalNetwork(authority, router), SimulatedAttester(platform_key), platform_key)


@pytest.fixture
def world() -> World:
    """A fresh world per test."""
    return make_world()


def reading(publisher: Publisher, customer: bytes, start: int, wh: int, region: str = "R01"):  # type: ignore[no-untyped-def]
    """A HIGH raw reading publication."""
    return publisher.seal(
        PrivacyLevel.HIGH,
        "reading",
        {"wh": wh},
        at=AT,
        region=region,
        customer=customer,
        start=start,
        interval=900,
    )


def everything() -> Subscription:
    """The empty subscription."""
    return Subscription()


_ = os
