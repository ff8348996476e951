"""The router: matches publications to subscriptions and hands each member its share.

Sans-IO and single-threaded: `route(publisher, items)` takes a batch of publications
(`[header, sealed]` arrays) from one publisher and returns, per member, the publications it
gets, plus each refused item's index and reason. The router reads headers only; payloads
pass through sealed. It checks that the header names the publisher that sent it and that
this publisher may publish at the header's level, and a type's floor level (raw readings
never travel as LOW). HIGH publications reach an app only while the customer consents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meterseal.dissemination.errors import DisseminationError, MalformedPublication, Reason
from meterseal.dissemination.levels import TYPE_FLOOR, PrivacyLevel, Role, grant
from meterseal.dissemination.matching import MatchingEngine
from meterseal.dissemination.publication import decode_header, split_publication
from meterseal.dissemination.subscription import Subscription

_HIGH = int(PrivacyLevel.HIGH)
_FLOORS = {kind: int(level) for kind, level in TYPE_FLOOR.items()}  # type_allowed, by int


@dataclass
class Routed:
    """What one batch became: deliveries per member, and refusals as (index, reason)."""

    deliveries: dict[str, list[Any]] = field(default_factory=dict)
    refused: list[tuple[int, Reason]] = field(default_factory=list)
    unmatched: int = 0


class Router:
    """Subscriptions, publishers and consent as the publisher set them up; routes batches."""

    def __init__(self) -> None:
        self.engine = MatchingEngine()
        self._next_id = 1
        self._owner: dict[int, str] = {}
        self._subscriptions: dict[str, list[int]] = {}
        self._roles: dict[str, Role] = {}
        self._publishes: dict[str, frozenset[int]] = {}
        self._all_customers: set[str] = set()  # members reading every customer's HIGH data
        self._consent: dict[bytes, set[str]] = {}
        self.links: dict[str, bytes] = {}
        self.counters: Counter[str] = Counter()

    # -- control (RouterControl) ----------------------------------------------------------

    def add_member(self, member: str, role: Role) -> None:
        """Know `member` and its role."""
        self._roles[member] = role
        if grant(role, PrivacyLevel.HIGH).all_customers:
            self._all_customers.add(member)

    def remove_member(self, member: str) -> None:
        """Forget the member's subscriptions, publishing rights, consents and link."""
        for ident in self._subscriptions.pop(member, []):
            self.engine.remove(ident)
            del self._owner[ident]
        self._roles.pop(member, None)
        self._publishes.pop(member, None)
        self._all_customers.discard(member)
        self.links.pop(member, None)
        for apps in self._consent.values():
            apps.discard(member)

    def subscribe(self, member: str, level: PrivacyLevel, subscription: Subscription) -> int:
        """Register `subscription` of a known member at `level`; its id."""
        role = self._roles.get(member)
        if role is None:
            raise DisseminationError(Reason.UNKNOWN_SUBSCRIBER, member)
        if not grant(role, level).read:
            raise DisseminationError(Reason.ROLE_NOT_ALLOWED, f"{role} may not read {level.name}")
        ident, self._next_id = self._next_id, self._next_id + 1
        self.engine.add(ident, level, subscription)
        self._owner[ident] = member
        self._subscriptions.setdefault(member, []).append(ident)
        return ident

    def allow_publisher(self, member: str, levels: Iterable[PrivacyLevel]) -> None:
        """Let `member` publish at `levels`."""
        self._publishes[member] = frozenset(int(lv) for lv in levels)

    def set_consent(self, customer: bytes, app: str, granted: bool) -> None:
        """Whether `customer`'s HIGH publications may reach `app`."""
        if granted:
            self._consent.setdefault(customer, set()).add(app)
        else:
            self._consent.get(customer, set()).discard(app)

    def set_link(self, member: str, key: bytes) -> None:
        """The member's link key (used by framed transports)."""
        self.links[member] = key

    def members(self) -> dict[str, Role]:
        """Known members and their roles."""
        return dict(self._roles)

    # -- data -----------------------------------------------------------------------------

    def route(self, publisher: str, items: Sequence[object]) -> Routed:
        """Route one batch from `publisher`; bad items are refused, never raised."""
        routed = Routed()
        allowed = self._publishes.get(publisher, frozenset())
        deliveries, owner, match = routed.deliveries, self._owner, self.engine.match
        for index, item in enumerate(items):
            try:
                header, _ = split_publication(item)
                fields = decode_header(header)
            except MalformedPublication as exc:
                routed.refused.append((index, exc.reason))
                continue
            level = fields[1]
            if fields[3] != publisher or level not in allowed:
                routed.refused.append((index, Reason.UNAUTHORIZED_PUBLISHER))
                continue
            if _FLOORS.get(fields[2], _HIGH) > level:
                routed.refused.append((index, Reason.LEVEL_TOO_LOW_FOR_TYPE))
                continue
            hits = match(fields)
            if not hits:
                routed.unmatched += 1
                continue
            targets = {owner[i] for i in hits}
            if level == _HIGH:
                consented = self._consent.get(fields[7], ())
                targets = {t for t in targets if t in self._all_customers or t in consented}
            for target in targets:
                batch = deliveries.get(target)
                if batch is None:
                    deliveries[target] = [item]
                else:
                    batch.append(item)
        self._count(routed, len(items))
        return routed

    def _count(self, routed: Routed, received: int) -> None:
        self.counters["received"] += received
        self.counters["unmatched"] += routed.unmatched
        self.counters["delivered"] += sum(len(b) for b in routed.deliveries.values())
        for _, reason in routed.refused:
            self.counters[f"refused_{reason.value}"] += 1
