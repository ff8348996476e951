"""The router: matches publications to subscriptions and hands each member its share.

Sans-IO and single-threaded: `route_elements(publisher, elements)` takes a flat batch
(header, sealed, header, sealed, …: what a frame carries) from one publisher and returns, per
member, the flat batch it gets, plus each refused publication's index and reason;
`route(publisher, items)` does the same for a list of `[header, sealed]` items. The router
reads headers only; payloads pass through sealed. It checks that the header names the
publisher that sent it and that this publisher may publish at the header's level, and a
type's floor level (raw readings never travel as LOW). HIGH publications reach an app
only while the customer consents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2

from meterseal.dissemination.errors import DisseminationError, MalformedPublication, Reason
from meterseal.dissemination.levels import TYPE_FLOOR, PrivacyLevel, Role, grant
from meterseal.dissemination.matching import MatchingEngine
from meterseal.dissemination.publication import (
    MAX_HEADER,
    MAX_SEALED,
    NONCE_LENGTH,
    TAG_LENGTH,
    validate_fields,
)
from meterseal.dissemination.subscription import Subscription
from meterseal.dissemination.wire import encode_header

_HIGH = int(PrivacyLevel.HIGH)
_FLOORS = {kind: int(level) for kind, level in TYPE_FLOOR.items()}  # type_allowed, by int
_SEALED_MIN = NONCE_LENGTH + TAG_LENGTH
_MALFORMED = Reason.MALFORMED_PUBLICATION
_CBOR_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)


@dataclass
class Routed:
    """What one batch became: deliveries per member (flat), and refusals as (index, reason)."""

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
        """Route a batch of `[header, sealed]` items; refusals carry the item's index."""
        elements: list[bytes] = []
        positions: list[int] = []
        shapeless: list[tuple[int, Reason]] = []
        for index, item in enumerate(items):
            if type(item) is list and len(item) == 2 and type(item[0]) is type(item[1]) is bytes:
                elements += item
                positions.append(index)
            else:
                shapeless.append((index, Reason.MALFORMED_PUBLICATION))
        routed = self.route_elements(publisher, elements)
        routed.refused = sorted([*shapeless, *((positions[i], r) for i, r in routed.refused)])
        self.counters["refused_malformed_publication"] += len(shapeless)
        self.counters["received"] += len(shapeless)
        return routed

    def route_elements(self, publisher: str, elements: Sequence[bytes]) -> Routed:
        """Route a flat batch `header, sealed, header, sealed, …` (a frame's elements).

        Deliveries are flat batches too. The hot path: one strict decode per header (cbor2
        and a canonical re-encoding), an index lookup, the consent filter; no copies.
        """
        routed = Routed()
        refused, deliveries = routed.refused, routed.deliveries
        allowed = self._publishes.get(publisher, frozenset())
        owner, match, consent, everyone = (
            self._owner,
            self.engine.match,
            self._consent,
            self._all_customers,
        )
        loads, validate, encode, malformed = cbor2.loads, validate_fields, encode_header, _MALFORMED
        marks: dict[str, int] = {}
        unmatched = 0
        for index in range(len(elements) // 2):
            header, sealed = elements[2 * index], elements[2 * index + 1]
            if not _SEALED_MIN <= len(sealed) <= MAX_SEALED or len(header) > MAX_HEADER:
                refused.append((index, malformed))
                continue
            try:
                fields = loads(header)
                validate(fields)
                if encode(fields) != header:
                    raise MalformedPublication("not canonical")
            except (MalformedPublication, *_CBOR_ERRORS):
                refused.append((index, malformed))
                continue
            level = fields[1]
            if fields[3] != publisher or level not in allowed:
                refused.append((index, Reason.UNAUTHORIZED_PUBLISHER))
                continue
            if _FLOORS.get(fields[2], _HIGH) > level:
                refused.append((index, Reason.LEVEL_TOO_LOW_FOR_TYPE))
                continue
            hits = match(fields)
            if not hits:
                unmatched += 1
                continue
            consented = consent.get(fields[7], ()) if level == _HIGH else None
            for ident in hits:
                target = owner[ident]
                if consented is not None and target not in everyone and target not in consented:
                    continue
                if marks.get(target) == index:
                    continue  # two of its subscriptions matched: one copy
                marks[target] = index
                batch = deliveries.get(target)
                if batch is None:
                    deliveries[target] = [header, sealed]
                else:
                    batch += (header, sealed)
        if len(elements) % 2:
            refused.append((len(elements) // 2, malformed))
        routed.unmatched = unmatched
        self._count(routed, (len(elements) + 1) // 2)
        return routed

    def _count(self, routed: Routed, received: int) -> None:
        self.counters["received"] += received
        self.counters["unmatched"] += routed.unmatched
        self.counters["delivered"] += sum(len(b) for b in routed.deliveries.values()) // 2
        for _, reason in routed.refused:
            self.counters[f"refused_{reason.value}"] += 1
