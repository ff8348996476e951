"""The router as a service, sans-IO: the publisher's authority and the router behind byte handlers.

A transport (NATS) delivers request bytes to one handler and publishes what it returns;
it never holds a key. Subjects under a namespace NS:

    NS.challenge       request: member name              reply: {"ok", "nonce"}
    NS.admit           request: AdmissionRequest         reply: {"ok", "handout"}
    NS.pub.MEMBER      request: frame of publications    reply: {"ok", "refused", "unmatched"}
    NS.sub.MEMBER      frames of deliveries, router to member
    NS.keys.MEMBER     handouts after a rotation, publisher to member
    NS.leave.MEMBER    request: an empty frame under the member's link   reply: {"ok", "rekeyed"}
    NS.op              operator command (HMAC-SHA256 with the operator key), reply {"ok", …}

Every refusal is a reply {"ok": false, "reason", "detail"}; nothing a client sends can stop
the node. A refused challenge, admission or frame is counted under `refused_REASON` in the
router's counters (the service's metrics). A challenge is issued to its requester (over NATS,
the reply inbox) as an attempt of its own; see `challenges` for how they are bounded.
Operator commands carry their issue time and a nonce; stale or repeated ones are refused,
so a recorded command cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2

from meterseal.dissemination.admission import AdmissionRequest, check_member_name
from meterseal.dissemination.authority import Authority, Handouts
from meterseal.dissemination.errors import DisseminationError, Reason
from meterseal.dissemination.frames import Link
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.router import Router

Rng = Callable[[int], bytes]
Outgoing = list[tuple[str, bytes]]
OPERATOR_WINDOW: Final = 60.0
DEFAULT_NAMESPACE: Final = "ms.dissem"


def reply(ok: bool = True, **fields: Any) -> bytes:
    """A reply map."""
    encoded: bytes = cbor2.dumps({"ok": ok, **fields}, canonical=True)
    return encoded


def refusal(exc: DisseminationError) -> bytes:
    """The reply for a refusal."""
    return reply(False, reason=exc.reason.value, detail=exc.detail)


def operator_command(key: bytes, command: dict[str, Any], *, now: float, nonce: bytes) -> bytes:
    """An authenticated operator command (what `meterseal router consent …` sends)."""
    body = cbor2.dumps([int(now * 1000), nonce, command], canonical=True)
    return cbor2.dumps([body, hmac.new(key, body, hashlib.sha256).digest()])


@dataclass
class RouterNode:
    """The publisher's authority and its router, answering transport bytes."""

    authority: Authority
    router: Router
    operator_key: bytes
    rng: Rng
    namespace: str = DEFAULT_NAMESPACE
    links: dict[str, Link] = field(default_factory=dict)
    seen_commands: dict[bytes, float] = field(default_factory=dict)
    # Called after an operator command changed consent or keys (the service saves its state).
    on_change: Callable[[], None] | None = None

    def subject(self, kind: str, member: str = "") -> str:
        """NS.kind or NS.kind.member."""
        return f"{self.namespace}.{kind}.{member}" if member else f"{self.namespace}.{kind}"

    def on_challenge(self, data: bytes, *, now: float, requester: str = "") -> bytes:
        """A nonce for the member named in `data`, issued to `requester`."""
        try:
            name = check_member_name(data.decode("ascii", "replace"))
            return reply(nonce=self.authority.challenge(name, now=now, requester=requester))
        except DisseminationError as exc:
            return self._refused(exc)

    def on_admit(self, data: bytes, *, now: float) -> bytes:
        """Admit the requester: its handout, or the reason it was refused."""
        try:
            request = AdmissionRequest.decode(data)
            handout = self.authority.admit(request, now=now)
        except DisseminationError as exc:
            return self._refused(exc)
        self._link(request.member, renew=True)
        return reply(handout=handout)

    def _refused(self, exc: DisseminationError) -> bytes:
        self.router.counters[f"refused_{exc.reason.value}"] += 1
        return refusal(exc)

    def _link(self, member: str, *, renew: bool = False) -> Link | None:
        key = self.router.links.get(member)
        if key is None:
            self.links.pop(member, None)
            return None
        link = self.links.get(member)
        if link is None or renew or link.key != key:
            link = self.links[member] = Link(key)
        return link

    def on_publications(self, publisher: str, data: bytes) -> tuple[bytes, Outgoing]:
        """Route one frame from `publisher`: the reply and the frames to publish."""
        link = self._link(publisher)
        if link is None:
            return refusal(DisseminationError(Reason.UNKNOWN_LINK, publisher)), []
        try:
            elements = link.open(self.subject("pub", publisher), data)
        except DisseminationError as exc:
            return self._refused(exc), []
        routed = self.router.route_elements(publisher, elements)
        outgoing = []
        for member, batch in routed.deliveries.items():
            target = self._link(member)
            if target is not None:
                subject = self.subject("sub", member)
                outgoing.append((subject, target.seal(subject, batch, self.rng)))
        refused = [[index, reason.value] for index, reason in routed.refused]
        return reply(refused=refused, unmatched=routed.unmatched), outgoing

    def on_leave(self, member: str, data: bytes, *, now: float) -> tuple[bytes, Outgoing]:
        """A member's own goodbye, sealed under its link (so only it can send it): it is
        removed as the operator would remove it, and every key it held rotates away. A
        publisher that runs as a job (`router publish`) may then be admitted again."""
        link = self._link(member)
        if link is None:
            return refusal(DisseminationError(Reason.UNKNOWN_LINK, member)), []
        try:
            link.open(self.subject("leave", member), data)
            handouts = self.authority.remove(member, now=now)
        except DisseminationError as exc:
            return refusal(exc), []
        self.links.pop(member, None)
        if self.on_change is not None:
            self.on_change()
        return reply(rekeyed=[m for m, _ in handouts]), self.handouts(handouts)

    def handouts(self, handouts: Handouts) -> Outgoing:
        """Handouts as messages to each member's keys subject."""
        return [(self.subject("keys", member), handout) for member, handout in handouts]

    def on_operator(self, data: bytes, *, now: float) -> tuple[bytes, Outgoing]:
        """Run an authenticated operator command."""
        try:
            command = self._operator(data, now)
            return self._run(command, now)
        except DisseminationError as exc:
            return refusal(exc), []

    def _operator(self, data: bytes, now: float) -> dict[str, Any]:
        bad = Reason.BAD_OPERATOR_COMMAND
        try:
            body, tag = cbor2.loads(data)
            issued, nonce, command = cbor2.loads(body)
        except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
            raise DisseminationError(bad, "not an operator command") from exc
        expected = hmac.new(self.operator_key, body, hashlib.sha256).digest()
        if type(tag) is not bytes or not hmac.compare_digest(tag, expected):
            raise DisseminationError(bad, "not signed with the operator key")
        if type(issued) is not int or abs(now - issued / 1000) > OPERATOR_WINDOW:
            raise DisseminationError(bad, "stale or future command")
        self.seen_commands = {n: t for n, t in self.seen_commands.items() if t > now}
        if type(nonce) is not bytes or nonce in self.seen_commands:
            raise DisseminationError(bad, "replayed command")
        self.seen_commands[nonce] = now + 2 * OPERATOR_WINDOW
        if type(command) is not dict or type(command.get("op")) is not str:
            raise DisseminationError(bad, "a command is a map with an op")
        return command

    def _run(self, command: dict[str, Any], now: float) -> tuple[bytes, Outgoing]:
        op, authority = command["op"], self.authority
        if op in ("grant", "revoke"):
            customer, app = command.get("customer"), command.get("app")
            if type(customer) is not bytes or not customer:
                raise DisseminationError(Reason.BAD_OPERATOR_COMMAND, "customer pseudonym")
            change = authority.grant_consent if op == "grant" else authority.revoke_consent
            handouts = change(customer, str(app), now=now)
        elif op == "remove":
            handouts = authority.remove(str(command.get("member")), now=now)
            self.links.pop(str(command.get("member")), None)
        elif op == "rotate":
            try:
                level = PrivacyLevel(int(command.get("level", 0)))
            except (ValueError, TypeError) as exc:
                raise DisseminationError(Reason.BAD_OPERATOR_COMMAND, "unknown level") from exc
            handouts = authority.rotate(level, now=now)
        elif op == "status":
            members = {m.name: [m.role.value, m.state.value] for m in authority.members.values()}
            return reply(members=members, counters=dict(self.router.counters)), []
        elif op == "consents":
            members = {m.name: [m.role.value, m.state.value] for m in authority.members.values()}
            consent = sorted([c, sorted(apps)] for c, apps in authority.consent.items() if apps)
            return reply(consents=consent, members=members), []
        else:
            raise DisseminationError(Reason.BAD_OPERATOR_COMMAND, f"unknown op {op!r}")
        if self.on_change is not None:
            self.on_change()
        return reply(rekeyed=[m for m, _ in handouts]), self.handouts(handouts)
