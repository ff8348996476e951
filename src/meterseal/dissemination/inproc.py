"""The in-process transport (the embedded default): authority, router and members in one process.

Deliveries are handed to each member's handler as the router produces them (flat batches:
header, sealed, …, as over NATS), or kept in its inbox as `[header, sealed]` items; key
handouts go straight to the member they are for. Nothing is framed: nothing leaves the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meterseal.dissemination.authority import Authority, Handouts
from meterseal.dissemination.errors import HandoutRejected
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.member import MemberClient
from meterseal.dissemination.router import Routed, Router
from meterseal.dissemination.subscription import Subscription
from meterseal.dissemination.wire import pairs
from meterseal.trust.attestation import Attester
from meterseal.trust.measurement import Measurement

Handler = Callable[[list[bytes]], object]


class LocalNetwork:
    """One publisher's authority and router, and the members that joined in this process."""

    def __init__(self, authority: Authority, router: Router) -> None:
        self.authority = authority
        self.router = router
        self.clients: dict[str, MemberClient] = {}
        self.handlers: dict[str, Handler] = {}
        self.inboxes: dict[str, list[Any]] = {}
        self.refused_handouts: list[tuple[str, HandoutRejected]] = []

    def join(
        self,
        client: MemberClient,
        subscriptions: tuple[tuple[PrivacyLevel, Subscription], ...] = (),
        *,
        now: float,
        attester: Attester | None = None,
        measurement: Measurement | None = None,
        handler: Handler | None = None,
    ) -> None:
        """Admit `client` (challenge, request, handout); AdmissionRefused if it is refused."""
        nonce = self.authority.challenge(client.name, now=now)
        request = client.request(nonce, subscriptions, attester=attester, measurement=measurement)
        handout = self.authority.admit(request, now=now)
        client.accept(handout)
        self.clients[client.name] = client
        if handler is not None:
            self.handlers[client.name] = handler
        else:
            self.inboxes.setdefault(client.name, [])

    def publish(self, publisher: str, items: list[Any]) -> Routed:
        """Route a batch from `publisher` and hand each member its share."""
        routed = self.router.route(publisher, items)
        for member, batch in routed.deliveries.items():
            handler = self.handlers.get(member)
            if handler is not None:
                handler(batch)
            elif member in self.inboxes:
                self.inboxes[member].extend(pairs(batch))
        return routed

    def deliver(self, handouts: Handouts) -> None:
        """Give each handout to its member (refusals are kept, never raised)."""
        for member, handout in handouts:
            client = self.clients.get(member)
            if client is None:
                continue
            try:
                client.accept(handout)
            except HandoutRejected as exc:
                self.refused_handouts.append((member, exc))

    def remove(self, member: str, *, now: float) -> None:
        """Expel `member` and rekey the rest."""
        self.deliver(self.authority.remove(member, now=now))
        self.handlers.pop(member, None)

    def grant_consent(self, customer: bytes, app: str, *, now: float) -> None:
        """A customer grants `app` its HIGH data."""
        self.deliver(self.authority.grant_consent(customer, app, now=now))

    def revoke_consent(self, customer: bytes, app: str, *, now: float) -> None:
        """A customer withdraws `app`'s access."""
        self.deliver(self.authority.revoke_consent(customer, app, now=now))

    def take(self, member: str) -> list[Any]:
        """What `member`'s inbox received since the last take."""
        items = self.inboxes.get(member, [])
        self.inboxes[member] = []
        return items
