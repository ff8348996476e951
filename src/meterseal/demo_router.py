"""The demo's dissemination router, in the portal's process: `demo --serve`'s apps and consent.

The publisher's authority and its router run in memory (the dissemination's in-process
transport, dissemination.inproc) with SIMULATED attestation: a platform key made now, which
gives no hardware guarantee, and stand-in code identities (`stand_in`: a digest of the role's
name). Its members pass the same admission as `router serve`'s (attested quote, policy by
role): the head-end's publisher, an aggregator, the utility and one app, `demo-app`,
subscribed to every raw reading, which the router delivers a customer's readings only with
that customer's consent.
The portal's apps page reaches it as `bills serve --router-nats` reaches a router on NATS:
signed operator commands, here handed to the node in the same process instead of over NATS;
the key handouts a command makes (a withdrawal rotates the customer's key) go straight to the
members here (`DeliveringAuthority`), as the node would send them over NATS.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from meterseal.dissemination.authority import Authority, Handouts
from meterseal.dissemination.inproc import LocalNetwork
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import MemberClient, Publisher
from meterseal.dissemination.node import RouterNode
from meterseal.dissemination.router import Routed
from meterseal.dissemination.subscription import Subscription
from meterseal.trust.measurement import Measurement

DEMO_APP = "demo-app"
PUBLISHER = "utility"
# Who the demo admits, with what each subscribes to (every member: the empty subscription).
MEMBERS = (
    ("headend", Role.PUBLISHER, ()),
    ("aggregator", Role.AGGREGATOR, (PrivacyLevel.HIGH,)),
    ("utility", Role.UTILITY, (PrivacyLevel.MODERATE,)),
    (DEMO_APP, Role.APP, (PrivacyLevel.HIGH,)),
)


@dataclass
class DeliveringAuthority(Authority):
    """The authority, handing the key handouts an operator command makes (consent, rotation,
    removal) straight to the members in this process, as LocalNetwork's own methods do: the
    node would send them over NATS, and in-process members have no NATS link."""

    deliver: Callable[[Handouts], None] | None = None

    def _handed(self, handouts: Handouts) -> Handouts:
        if self.deliver is not None:
            self.deliver(handouts)
        return handouts

    def grant_consent(self, customer: bytes, app: str, *, now: float) -> Handouts:
        """As Authority's, the handouts delivered."""
        return self._handed(super().grant_consent(customer, app, now=now))

    def revoke_consent(self, customer: bytes, app: str, *, now: float) -> Handouts:
        """As Authority's, the handouts delivered."""
        return self._handed(super().revoke_consent(customer, app, now=now))

    def rotate(self, level: PrivacyLevel, *, now: float) -> Handouts:
        """As Authority's, the handouts delivered."""
        return self._handed(super().rotate(level, now=now))

    def remove(self, name: str, *, now: float) -> Handouts:
        """As Authority's, the handouts delivered."""
        return self._handed(super().remove(name, now=now))


@dataclass
class DemoRouter:
    """An in-process router with the demo's members, and the portal's channel to it."""

    node: RouterNode
    headend: Publisher
    network: LocalNetwork
    clients: dict[str, MemberClient]  # each member's side (its keys), by name

    async def channel(self, command: bytes) -> bytes:
        """Run one signed operator command (portal.consent's Channel), as NATS would carry it."""
        answer, _outgoing = self.node.on_operator(command, now=time.time())
        return answer  # handouts went to the members already (DeliveringAuthority)

    def publish(self, items: list[list[bytes]]) -> Routed:
        """Route a batch of publications from the head-end's publisher; who received what."""
        return self.network.publish("headend", items)

    def reading(self, pseudonym: bytes, start: int, wh: int, region: str) -> list[bytes]:
        """A raw (HIGH) reading of the meter with `pseudonym`: the publication [header, sealed]."""
        return self.headend.seal(
            PrivacyLevel.HIGH, "reading", {"wh": wh}, at=int(time.time() * 1_000_000),
            region=region, customer=pseudonym, start=start, interval=900,
        )  # fmt: skip


def stand_in(role: Role) -> Measurement:
    """The demo's code identity of a member of `role`: a digest of its name, not a measurement
    of code (the platform is simulated too; `router serve` admits measured members)."""
    return Measurement(hashlib.sha256(f"meterseal demo member: {role.value}".encode()).digest())


def demo_router(operator_key: bytes | None = None) -> DemoRouter:
    """A router admitting the demo's members after simulated attestation."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from meterseal.dissemination.router import Router
    from meterseal.dissemination.service import admission_policy
    from meterseal.trust.attestation import SimulatedAttester, SimulatedVerifier

    platform = ed25519.Ed25519PrivateKey.generate()  # SIMULATED: no hardware behind it
    allow = [(role, stand_in(role)) for _, role, _ in MEMBERS]
    router = Router()
    authority = DeliveringAuthority(
        PUBLISHER, ed25519.Ed25519PrivateKey.generate(), SimulatedVerifier(platform.public_key()),
        admission_policy(allow), router, rng=os.urandom,
    )  # fmt: skip
    network = LocalNetwork(authority, router)
    authority.deliver = network.deliver
    attester, now = SimulatedAttester(platform), time.time()
    clients = {}
    for name, role, levels in MEMBERS:
        client = MemberClient(name, role, PUBLISHER, authority.public_key)
        subscriptions = tuple((level, Subscription()) for level in levels)
        network.join(client, subscriptions, now=now, attester=attester, measurement=stand_in(role))
        clients[name] = client
    node = RouterNode(authority, router, operator_key or os.urandom(32), os.urandom)
    headend = Publisher("headend", clients["headend"].keys, rng=os.urandom)
    return DemoRouter(node, headend, network, clients)
