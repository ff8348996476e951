"""The publisher's side of admission (the utility, on its customers' behalf).

Publisher-controlled subscriptions, as SCBR's mode the paper uses: a would-be member asks
for a challenge, answers with an attestation quote binding that nonce, its code measurement
and an ephemeral X25519 key, and only then are its subscriptions registered at the router
and its keys handed out, sealed to that attested key. Public apps (LOW only) skip the quote.
Removing a member, or a customer revoking an app's consent, rotates the keys it held, so it
cannot read anything published afterwards; the others get the new keys in fresh handouts.
Each challenge is an attempt of its own under its nonce (`challenges`): nobody's challenge
or wrong answer spends another's, and pending ones expire and are bounded in number.
Sans-IO: time and randomness come in as arguments, handouts go out as return values.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from meterseal.dissemination.admission import NONCE_BYTES, AdmissionRequest, check_member_name
from meterseal.dissemination.challenges import PendingChallenges
from meterseal.dissemination.errors import AdmissionRefused, Reason
from meterseal.dissemination.groupkeys import KEY_LENGTH, Keyring
from meterseal.dissemination.handout import (
    CEPOCH,
    CUSTOMER,
    LINK,
    MASTER,
    Entry,
    Meta,
    seal_handout,
)
from meterseal.dissemination.levels import PrivacyLevel, Role, grant
from meterseal.dissemination.lifecycle import TRANSITIONS, Event, State
from meterseal.dissemination.subscription import Subscription
from meterseal.runtime.transitions import Driver
from meterseal.trust.attestation import QuoteVerifier
from meterseal.trust.errors import AttestationError
from meterseal.trust.policy import Policy, Query, release_decision

Rng = Callable[[int], bytes]
Handouts = list[tuple[str, bytes]]  # (member, handout) to deliver
CHALLENGE_TTL = 60.0


def secret_name(role: Role, level: PrivacyLevel) -> str:
    """The trust-policy secret for `role`'s keys at `level` ("dissemination.app.high", …).

    The role is part of the name: a measurement allowed to be an app must not be able to
    ask for an aggregator's (all customers') keys by naming another role.
    """
    return f"dissemination.{role.value}.{level.name.lower()}"


class RouterControl(Protocol):
    """What the publisher tells the router; `Router` implements it."""

    def add_member(self, member: str, role: Role) -> None:
        """Know `member` and its role (its link key comes with `set_link`)."""

    def remove_member(self, member: str) -> None:
        """Drop the member's subscriptions, publishing rights and link."""

    def subscribe(self, member: str, level: PrivacyLevel, subscription: Subscription) -> int:
        """Register a subscription; its id."""
        ...

    def allow_publisher(self, member: str, levels: Iterable[PrivacyLevel]) -> None:
        """Let `member` publish at these levels."""

    def set_consent(self, customer: bytes, app: str, granted: bool) -> None:
        """Whether HIGH data of `customer` may be delivered to `app`."""

    def set_link(self, member: str, key: bytes) -> None:
        """The key framing the member's traffic with the router."""


def level_wide(role: Role) -> list[PrivacyLevel]:
    """Levels whose master key `role` holds (read or publish, all customers)."""
    return [
        lv for lv in PrivacyLevel if (g := grant(role, lv)).all_customers and (g.read or g.publish)
    ]


def needs_attestation(role: Role) -> bool:
    """Whether admitting `role` requires a verified quote (any attested grant)."""
    return any((g := grant(role, lv)).attested and (g.read or g.publish) for lv in PrivacyLevel)


@dataclass
class Member:
    """An admitted or would-be member as the publisher knows it."""

    name: str
    state: State
    role: Role = Role.PUBLIC_APP
    public_key: x25519.X25519PublicKey | None = None
    serial: int = 0
    measurement: str = ""
    assurance: str = ""


@dataclass
class Authority:
    """Admissions, consent and key rotation for one publisher."""

    name: str
    signing_key: ed25519.Ed25519PrivateKey
    verifier: QuoteVerifier | None
    policy: Policy
    router: RouterControl
    rng: Rng
    keyring: Keyring | None = None
    challenge_ttl: float = CHALLENGE_TTL
    members: dict[str, Member] = field(default_factory=dict)  # admitted or removed
    consent: dict[bytes, set[str]] = field(default_factory=dict)
    pending: PendingChallenges | None = None  # default: bounded as `challenges` says

    def __post_init__(self) -> None:
        if self.keyring is None:
            self.keyring = Keyring(self.rng)
        if self.pending is None:
            self.pending = PendingChallenges(self.challenge_ttl)

    @property
    def challenges(self) -> PendingChallenges:
        """The pending challenges (always set after construction)."""
        assert self.pending is not None
        return self.pending

    @property
    def keys(self) -> Keyring:
        """The group keys (always set after construction)."""
        assert self.keyring is not None
        return self.keyring

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        """What members verify handouts with."""
        return self.signing_key.public_key()

    # -- admission ------------------------------------------------------------------------

    def challenge(self, member: str, *, now: float, requester: str = "") -> bytes:
        """A fresh single-use nonce for `member`'s next admission request, issued to
        `requester` (who asked: over NATS its reply inbox); AdmissionRefused if `member` is
        admitted or too many challenges are pending (see `challenges`)."""
        check_member_name(member)
        known = self.members.get(member)
        TRANSITIONS.step(known.state if known else None, Event.CHALLENGE, by=Driver.PEER)
        nonce = self.rng(NONCE_BYTES)
        self.challenges.issue(member, requester, nonce, now=now)
        return nonce

    def admit(self, request: AdmissionRequest, *, now: float) -> bytes:
        """Admit the requester and return its handout; AdmissionRefused with a reason."""
        # Single use: a replayed or retried request finds none. A nonce nobody issued for
        # this name touches no one's attempt, so a wrong answer cannot spend another's.
        attempt = self.challenges.take(request.member, request.nonce)
        if attempt is None:
            raise AdmissionRefused(Reason.UNKNOWN_CHALLENGE, "ask for a challenge first")
        known = self.members.get(request.member)
        member = known if known is not None else Member(request.member, State.CHALLENGED)
        try:
            self._check(request, request.nonce, attempt.expires, now, member)
        except AdmissionRefused:
            TRANSITIONS.step(State.CHALLENGED, Event.REFUSE, by=Driver.PEER)  # forgotten
            raise
        member.state = TRANSITIONS.step(State.CHALLENGED, Event.ADMIT, by=Driver.PEER)
        self.members[member.name] = member
        self.challenges.forget(member.name)  # the others for this name can no longer win
        member.role = request.role
        member.public_key = x25519.X25519PublicKey.from_public_bytes(request.public_key)
        return self._register(member, request, now)

    def _check(
        self, request: AdmissionRequest, nonce: bytes, expires: float, now: float, member: Member
    ) -> None:
        if now > expires:
            raise AdmissionRefused(Reason.EXPIRED_CHALLENGE, "the challenge expired")
        for level, subscription in request.subscriptions:
            if not grant(request.role, level).read:
                raise AdmissionRefused(
                    Reason.ROLE_NOT_ALLOWED, f"{request.role} may not read {level.name}"
                )
            if not subscription.admits_level(level):
                raise AdmissionRefused(
                    Reason.SUBSCRIPTION_OUTSIDE_LEVEL, f"{subscription.text()!r} at {level.name}"
                )
        if needs_attestation(request.role):
            self._attest(request, nonce, member)

    def _attest(self, request: AdmissionRequest, nonce: bytes, member: Member) -> None:
        if self.verifier is None:
            raise AdmissionRefused(Reason.ATTESTATION_FAILED, "no attestation verifier set up")
        try:
            attested = self.verifier.verify(request.quote)
        except AttestationError as exc:
            raise AdmissionRefused(Reason.ATTESTATION_FAILED, f"{exc.check}: {exc}") from exc
        if not hmac.compare_digest(attested.nonce, nonce):
            raise AdmissionRefused(Reason.ATTESTATION_FAILED, "the quote binds another nonce")
        if not hmac.compare_digest(attested.public_key, request.public_key):
            raise AdmissionRefused(Reason.KEY_NOT_BOUND, "the quote binds another key")
        for level in PrivacyLevel:
            g = grant(request.role, level)
            if not (g.attested and (g.read or g.publish)):
                continue
            query = Query(
                attested.measurement, request.role.value, secret_name(request.role, level)
            )
            decision = release_decision(self.policy, query)
            if not decision.allowed:
                role = request.role.value  # the operator's fix, where the refusal is read
                raise AdmissionRefused(
                    Reason.MEASUREMENT_NOT_ALLOWED,
                    f"{decision.reason}; a router admits a {role} with `router serve --allow "
                    f"{role}` (this checkout's) or --allow {role}=MEASUREMENT",
                )
        member.measurement, member.assurance = attested.measurement.hex, attested.assurance

    def _register(self, member: Member, request: AdmissionRequest, now: float) -> bytes:
        self.router.add_member(member.name, member.role)
        link = self.rng(KEY_LENGTH)
        self.router.set_link(member.name, link)
        publishes = [lv for lv in PrivacyLevel if grant(member.role, lv).publish]
        if publishes:
            self.router.allow_publisher(member.name, publishes)
        for level, subscription in request.subscriptions:
            self.router.subscribe(member.name, level, subscription)
        for customer, apps in self.consent.items():
            if member.name in apps and member.role is Role.APP:
                self.router.set_consent(customer, member.name, True)
        return self._handout(member, [*self._entries(member), Entry(LINK, key=link)], now)

    # -- keys -----------------------------------------------------------------------------

    def _entries(self, member: Member) -> list[Entry]:
        """Every key `member` should hold now."""
        entries = []
        for level in level_wide(member.role):
            epoch, key = self.keys.master(level)
            entries.append(Entry(MASTER, int(level), epoch, key=key))
        if member.role is Role.APP:
            for customer in sorted(c for c, apps in self.consent.items() if member.name in apps):
                epoch, cepoch, key = self.keys.customer_key(customer)
                entries.append(
                    Entry(CUSTOMER, int(PrivacyLevel.HIGH), epoch, customer, cepoch, key)
                )
        if grant(member.role, PrivacyLevel.HIGH).publish:
            for customer, cepoch in sorted(self.keys.customer_epochs.items()):
                entries.append(Entry(CEPOCH, int(PrivacyLevel.HIGH), 0, customer, cepoch))
        return entries

    def _handout(self, member: Member, entries: list[Entry], now: float) -> bytes:
        assert member.public_key is not None
        member.serial += 1
        meta = Meta(self.name, member.name, member.serial, int(now))
        return seal_handout(meta, entries, member.public_key, self.signing_key)

    def _rekey(self, names: Iterable[str], now: float) -> Handouts:
        handouts = []
        for name in sorted(set(names)):
            member = self.members[name]
            if member.state is State.ADMITTED:
                member.state = TRANSITIONS.step(member.state, Event.REKEY, by=Driver.US)
                handouts.append((name, self._handout(member, self._entries(member), now)))
        return handouts

    def _admitted(self) -> list[Member]:
        return [m for m in self.members.values() if m.state is State.ADMITTED]

    def _holders(self, level: PrivacyLevel) -> list[str]:
        names = [m.name for m in self._admitted() if level in level_wide(m.role)]
        if level is PrivacyLevel.HIGH:  # every app's customer keys derive from the master
            names += [m.name for m in self._admitted() if m.role is Role.APP]
        return names

    def _customer_holders(self, customer: bytes) -> list[str]:
        apps = self.consent.get(customer, set())
        return [
            m.name
            for m in self._admitted()
            if (m.role is Role.APP and m.name in apps) or grant(m.role, PrivacyLevel.HIGH).publish
        ]

    def rotate(self, level: PrivacyLevel, *, now: float) -> Handouts:
        """A new master for `level` (e.g. periodically); handouts for everyone holding it."""
        self.keys.rotate(level)
        return self._rekey(self._holders(level), now)

    def remove(self, name: str, *, now: float) -> Handouts:
        """Expel a member: router forgets it, every key it held is rotated away."""
        member = self.members.get(name)
        if member is None:
            raise AdmissionRefused(Reason.UNKNOWN_SUBSCRIBER, f"no member {name!r}")
        member.state = TRANSITIONS.step(member.state, Event.REMOVE, by=Driver.PEER)
        self.router.remove_member(name)
        affected: list[str] = []
        for level in level_wide(member.role):
            self.keys.rotate(level)
            affected += self._holders(level)
        if member.role is Role.APP:
            for customer, apps in self.consent.items():
                if name in apps:
                    self.keys.rotate_customer(customer)
                    affected += self._customer_holders(customer)
        return self._rekey(affected, now)

    # -- consent --------------------------------------------------------------------------

    def grant_consent(self, customer: bytes, app: str, *, now: float) -> Handouts:
        """`customer` lets `app` read its HIGH data from the next publication on."""
        check_member_name(app)
        self.consent.setdefault(customer, set()).add(app)
        member = self.members.get(app)
        if member is None or member.state is not State.ADMITTED or member.role is not Role.APP:
            return []  # takes effect when the app is admitted
        self.router.set_consent(customer, app, True)
        return self._rekey([app], now)

    def revoke_consent(self, customer: bytes, app: str, *, now: float) -> Handouts:
        """`customer` withdraws `app`'s access: routing stops and the customer's key rotates."""
        check_member_name(app)
        apps = self.consent.get(customer, set())
        if app not in apps:
            return []
        apps.discard(app)
        self.router.set_consent(customer, app, False)
        self.keys.rotate_customer(customer)
        return self._rekey(self._customer_holders(customer), now)

    def consents(self, customer: bytes) -> frozenset[str]:
        """The apps `customer` consented to."""
        return frozenset(self.consent.get(customer, ()))
