"""The configuration and attestation service (CAS), sans-IO: nonces, release, rotation, the log.

The release protocol, one nonce per attempt (the states and moves are `TRANSITIONS`):

    (none) ─issue─▶ ISSUED ─quote verified, in time─▶ ATTESTED ─policy allows all─▶ RELEASED
                       │                                  └─policy refuses one (or the
                       │                                    release fails)─▶ REFUSED
                       └─quote verified, too late─▶ EXPIRED

A nonce moves out of ISSUED exactly once (atomically, in the state), so a replayed quote
finds it used and is refused. A release verifies the quote (its backend's verifier), checks
the nonce, asks the policy about every requested secret (all or nothing), and HPKE-encrypts
the latest version of each to the attested ephemeral key (`channel`). Every release and
every refusal, and every administrative change, is appended to the CAS log: an RFC 9162
Merkle log whose heads are MACed under the master key (`vault`).

The policy's allow rules name a stage: a request's stage label must be the label of the rule
that allows its measurement the secret, or it gets nothing (and the refusal logs both labels).

Rotation stores a new version of a secret; workers get the latest. Revoking a secret withdraws
every version stored so far: it is released to nobody (the refusal says so) until a newer
version is stored, e.g. by a rotation. Revocation denies a
measurement everything from its next request; what it already received stays with it, so
`revoke` reports those secrets, to be rotated (then the revoked worker's copies go stale).

Nonces and releases need no account, so what a source may make the CAS keep is capped
(`limits`): outstanding nonces per source and in all (beyond: `TooManyNonces`, 429), and the
refusals that moved no nonce the log records (beyond: refused, counted, not logged).
Time (`clock`) and randomness (`rng`) are injected; IO lives in the `CasState` adapter.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from meterseal.crypto import cose
from meterseal.runtime.transitions import Driver, TransitionTable
from meterseal.transparency.merkle import MerkleTree, leaf_hash
from meterseal.trust.attestation import (
    NONCE_BYTES,
    AttestedQuote,
    QuoteVerifier,
    parse_quote,
)
from meterseal.trust.channel import encrypt_to, release_info
from meterseal.trust.errors import AttestationError, ReleaseRefused, TrustError
from meterseal.trust.limits import CasLimits, NonceBudget, RefusalBudget, TooManyNonces
from meterseal.trust.measurement import Measurement
from meterseal.trust.policy import (
    AllowMeasurement,
    AnyOf,
    Policy,
    Query,
    RevokedMeasurements,
    refusal_hint,
    release_decision,
)
from meterseal.trust.state import CasState, LogEntry, LogRow, NonceState
from meterseal.trust.vault import Vault

NONCE_TTL = 60.0  # seconds a nonce stays fresh
MAX_SECRETS = 32  # per release request
MAX_SECRET_BYTES = 1 << 20
NAME = re.compile(r"[a-z0-9][a-z0-9._/-]{0,63}")


class Event(enum.StrEnum):
    """What moves a nonce on."""

    QUOTE_IN_TIME = "quote verified in time"
    QUOTE_LATE = "quote verified after the nonce expired"
    POLICY_ALLOWS = "policy allows every requested secret"
    POLICY_REFUSES = "policy refuses a requested secret"
    RELEASE_FAILED = "a secret could not be decrypted or encrypted"


# The release protocol: (state, event) -> next state. Anything else is refused. The CAS
# drives every event after its own checks (the nonce's state is read and moved atomically),
# so a refused move is a bug here, never the worker's input (`Driver.US`).
TRANSITIONS: TransitionTable[NonceState, Event] = TransitionTable(
    "release",
    {
        (NonceState.ISSUED, Event.QUOTE_IN_TIME): NonceState.ATTESTED,
        (NonceState.ISSUED, Event.QUOTE_LATE): NonceState.EXPIRED,
        (NonceState.ATTESTED, Event.POLICY_ALLOWS): NonceState.RELEASED,
        (NonceState.ATTESTED, Event.POLICY_REFUSES): NonceState.REFUSED,
        (NonceState.ATTESTED, Event.RELEASE_FAILED): NonceState.REFUSED,
    },
)


class BadRequest(ReleaseRefused):
    """The release request itself is malformed (HTTP 400/422), before any quote check."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=400)


@dataclass(frozen=True)
class IssuedNonce:
    """A fresh nonce and when it stops being fresh (clock seconds)."""

    nonce: bytes
    expires_at: float


@dataclass(frozen=True)
class ReleaseRequest:
    """A worker's request: its stage label, its quote, the secrets it wants."""

    stage: str
    quote: bytes
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class ReleasedSecret:
    """One secret version, HPKE-encrypted to the attested key."""

    name: str
    version: int
    sealed: bytes


@dataclass(frozen=True)
class Release:
    """What a successful release hands back."""

    measurement: Measurement
    backend: str
    assurance: str
    secrets: tuple[ReleasedSecret, ...]


@dataclass(frozen=True)
class Revoked:
    """The outcome of a revocation: was it new, and which secrets the measurement holds."""

    new: bool
    received: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SecretRevoked:
    """The outcome of a secret's revocation: was it new, and through which version."""

    new: bool
    version: int


def decode_entry(entry: bytes) -> dict[str, Any]:
    """A log entry's fields (measurement as hex)."""
    item = dict(cose.loads_strict(entry))
    if item.get("measurement") is not None:
        item["measurement"] = item["measurement"].hex()
    item["secrets"] = [list(s) for s in item.get("secrets", [])]
    return item


def check_log(rows: Sequence[LogRow], vault: Vault) -> list[str]:
    """Problems found re-deriving the log from its entries (none: it verifies)."""
    problems = []
    tree = MerkleTree()
    for row in rows:
        if row.seq != tree.size:
            problems.append(f"entry {row.seq}: expected sequence number {tree.size}")
        if leaf_hash(row.entry) != row.leaf_hash:
            problems.append(f"entry {row.seq}: its leaf hash does not match its content")
        tree.append(leaf_hash(row.entry))
        if tree.root != row.root:
            problems.append(f"entry {row.seq}: the stored root is not the tree's root")
        elif vault.head_mac(tree.size, tree.root) != row.mac:
            problems.append(f"entry {row.seq}: the head's MAC does not verify (rewritten?)")
    return problems


def check_name(kind: str, name: str) -> str:
    """`name` if it is a valid secret or stage name, else BadRequest."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadRequest(f"{kind} names are 1-64 of a-z 0-9 . _ / - (got {str(name)[:70]!r})")
    return name


class Cas:
    """The CAS core over one `CasState`, one `Vault` and the quote verifiers it accepts."""

    def __init__(
        self,
        state: CasState,
        vault: Vault,
        verifiers: Iterable[QuoteVerifier],
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
        nonce_ttl: float = NONCE_TTL,
        extra_policy: Policy | None = None,
        limits: CasLimits | None = None,
    ) -> None:
        self.state = state
        self.vault = vault
        self.verifiers = {v.backend: v for v in verifiers}
        self.clock = clock
        self.rng = rng
        self.nonce_ttl = nonce_ttl
        self.extra_policy = extra_policy
        self.limits = limits or CasLimits()
        self.nonces = NonceBudget(self.limits.max_nonces_per_source, self.limits.max_nonces)
        self.refusals = RefusalBudget(self.limits)
        self._tree: MerkleTree | None = None
        self._log_lock = threading.Lock()  # the cached tree is shared by the API's threads

    # -- the release protocol -----------------------------------------------------------

    def issue_nonce(self, source: str = "") -> IssuedNonce:
        """A fresh single-use nonce for `source` (a peer address), or TooManyNonces; nonces
        long expired are forgotten meanwhile."""
        now = self.clock()
        nonce = self.rng(NONCE_BYTES)
        full = self.nonces.take(source, nonce, now + self.nonce_ttl, now)
        if full is not None:  # refused before any write: a flood costs the store nothing
            raise TooManyNonces(full)
        try:
            # Kept one extra window after expiry, so a late replay is told "used", not "unknown".
            self.state.purge_nonces(now - self.nonce_ttl)
            self.state.add_nonce(nonce, now, now + self.nonce_ttl)
        except BaseException:
            self.nonces.done(nonce)
            raise
        return IssuedNonce(nonce, now + self.nonce_ttl)

    def release(self, request: ReleaseRequest, source: str = "") -> Release:
        """Verify, check freshness and policy, encrypt; ReleaseRefused otherwise, logged
        (a refusal that moved no nonce, within `source`'s budget: `limits`)."""
        try:
            names = self._checked(request)
        except BadRequest as refusal:
            refusal.logged = self._log_refusal(request, None, refusal.reason, source)
            raise
        attested = self._attest(request, source)
        nonce = attested.nonce
        self.nonces.done(nonce)  # every way on moves it out of ISSUED, or finds it moved
        record = self.state.nonce(nonce)
        if record is None:
            reason = "unknown nonce: this CAS never issued it, or forgot it"
            self._refuse(request, attested, reason, source)
        elif record.state is not NonceState.ISSUED:
            reason = f"nonce already {record.state}: a replayed quote"
            self._refuse(request, attested, reason, source)
        elif self.clock() > record.expires_at:
            self._step(nonce, NonceState.ISSUED, Event.QUOTE_LATE)
            self._refuse(request, attested, f"nonce expired (fresh for {self.nonce_ttl:g} s)")
        if not self._step(nonce, NonceState.ISSUED, Event.QUOTE_IN_TIME):
            self._refuse(request, attested, "nonce already used: a replayed quote", source)
        denied = self._policy_refusal(attested.measurement, request.stage, names)
        if denied is not None:
            self._step(nonce, NonceState.ATTESTED, Event.POLICY_REFUSES)
            self._refuse(request, attested, denied)
        try:
            released = tuple(self._encrypt(name, attested) for name in names)
        except TrustError as exc:  # the CAS's own fault (e.g. another master key): not a 4xx
            self._step(nonce, NonceState.ATTESTED, Event.RELEASE_FAILED)
            self._log_refusal(request, attested, f"release failed: {exc}")
            raise
        self._step(nonce, NonceState.ATTESTED, Event.POLICY_ALLOWS)
        self._log(
            "release",
            "released",
            request.stage,
            attested.measurement.digest,
            tuple((s.name, s.version) for s in released),
            attested.backend,
            assurance=attested.assurance,
        )
        return Release(attested.measurement, attested.backend, attested.assurance, released)

    def _checked(self, request: ReleaseRequest) -> tuple[str, ...]:
        check_name("stage", request.stage)
        names = request.secrets
        if not names or len(names) > MAX_SECRETS:
            raise BadRequest(f"ask for 1 to {MAX_SECRETS} secrets")
        for name in names:
            check_name("secret", name)
        if len(set(names)) != len(names):
            raise BadRequest("a secret is named twice")
        return names

    def _attest(self, request: ReleaseRequest, source: str) -> AttestedQuote:
        try:
            backend = parse_quote(request.quote).backend
            verifier = self.verifiers.get(backend)
            if verifier is None:
                accepted = ", ".join(sorted(self.verifiers)) or "none"
                raise AttestationError(f"backend {backend!r} not accepted (accepted: {accepted})")
            return verifier.verify(request.quote)
        except AttestationError as exc:
            self._refuse(request, None, f"quote refused ({exc.check}): {exc}", source)

    def _step(self, nonce: bytes, source: NonceState, event: Event) -> bool:
        target = TRANSITIONS.step(source, event, by=Driver.US)
        return self.state.move_nonce(nonce, source, target)

    def policy(self) -> Policy:
        """The policy in force: revocations, the stored allow rules, and any extra policy."""
        by_rule: dict[tuple[bytes, str], set[str]] = {}
        for rule in self.state.rules():
            by_rule.setdefault((rule.measurement, rule.stage), set()).add(rule.secret)
        revoked = frozenset(Measurement(r.measurement) for r in self.state.revocations())
        parts: list[Policy] = [RevokedMeasurements(revoked)]
        for (digest, stage), names in by_rule.items():
            parts.append(AllowMeasurement(Measurement(digest), frozenset(names), stage))
        if self.extra_policy is not None:
            parts.append(self.extra_policy)
        return AnyOf(tuple(parts))

    def _policy_refusal(
        self, measurement: Measurement, stage: str, names: Sequence[str]
    ) -> str | None:
        policy = self.policy()
        for name in names:
            decision = release_decision(policy, Query(measurement, stage, name))
            if not decision.allowed:
                hint = refusal_hint(self.state.rules(), measurement, stage, name, decision.reason)
                return decision.reason + hint
            if self.state.latest_secret(name) is None:
                return (
                    f"no secret named {name!r} in this CAS: import it "
                    "(`meterseal cas secrets import`, or `meterseal init` for a new deployment)"
                )
        for name in names:
            latest = self.state.latest_secret(name)
            withdrawn = self.revoked_through(name)
            if latest is not None and latest.version <= withdrawn:
                return (
                    f"secret {name!r} is revoked through version {withdrawn}: it is released "
                    f"again once rotated (`meterseal cas secrets rotate {name}`)"
                )
        return None

    def revoked_through(self, name: str) -> int:
        """The newest version of secret `name` withdrawn (0: none)."""
        return max(
            (r.version for r in self.state.secret_revocations() if r.name == name), default=0
        )

    def _encrypt(self, name: str, attested: AttestedQuote) -> ReleasedSecret:
        stored = self.state.latest_secret(name)
        assert stored is not None  # checked by _policy_refusal
        value = self.vault.open(name, stored.version, stored.sealed)
        info = release_info(name, stored.version, attested.measurement, attested.nonce)
        return ReleasedSecret(name, stored.version, encrypt_to(attested.public_key, value, info))

    def _refuse(
        self,
        request: ReleaseRequest,
        attested: AttestedQuote | None,
        reason: str,
        source: str | None = None,
    ) -> NoReturn:
        refusal = ReleaseRefused(reason)
        refusal.logged = self._log_refusal(request, attested, reason, source)
        raise refusal

    def _log_refusal(
        self,
        request: ReleaseRequest,
        attested: AttestedQuote | None,
        reason: str,
        source: str | None = None,
    ) -> bool:
        """Log a refusal; one that moved no nonce (`source` given) only within its budget."""
        if source is not None and not self.refusals.admit(source, self.clock()):
            return False
        names = request.secrets if isinstance(request.secrets, tuple) else ()
        self._log(
            "release",
            "refused",
            str(request.stage)[:64],
            attested.measurement.digest if attested else None,
            tuple((str(n)[:64], 0) for n in names[:MAX_SECRETS]),
            attested.backend if attested else "",
            reason,
            attested.assurance if attested else "",
        )
        return True

    # -- administration -----------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def put_secret(self, name: str, value: bytes) -> int:
        """Store a new version of secret `name` (import or rotation); its version."""
        check_name("secret", name)
        if not value or len(value) > MAX_SECRET_BYTES:
            raise BadRequest(f"a secret is 1 to {MAX_SECRET_BYTES} bytes")
        version = self.state.add_secret(
            name, lambda v: self.vault.seal(name, v, value, self.rng(12)), self._now()
        )
        self._log("secret-added", "done", "", None, ((name, version),), "", "")
        return version

    def rotate(self, name: str, check: Callable[[str, bytes], object] | None = None) -> int:
        """A fresh random value for secret `name`, as long as its latest; its new version.

        `check(name, value)` raises when `name` must hold something random bytes are not
        (key material of a fixed form): then nothing is stored. BadRequest if `name` is unknown.
        """
        latest = self.state.latest_secret(check_name("secret", name))
        if latest is None:
            raise BadRequest(f"no secret {name!r} to rotate; import it first")
        size = len(self.vault.open(name, latest.version, latest.sealed))
        value = self.rng(size)
        if check is not None:
            check(name, value)
        return self.put_secret(name, value)

    def revoke_secret(self, name: str, reason: str = "") -> SecretRevoked:
        """Withdraw every stored version of `name`: released to nobody until rotated."""
        latest = self.state.latest_secret(check_name("secret", name))
        if latest is None:
            raise BadRequest(f"no secret {name!r} to revoke")
        new = self.state.add_secret_revocation(name, latest.version, self._now(), reason)
        self._log("secret-revoked", "done", "", None, ((name, latest.version),), "", reason)
        return SecretRevoked(new, latest.version)

    def allow(self, stage: str, measurement: Measurement, secrets: Iterable[str]) -> list[int]:
        """Let `measurement` (running `stage`) receive `secrets`; the rule ids."""
        check_name("stage", stage)
        names = tuple(check_name("secret", s) for s in secrets)
        if not names:
            raise BadRequest("name at least one secret")
        now = self._now()
        ids = [self.state.add_rule(stage, measurement.digest, name, now) for name in names]
        self._log("policy-added", "done", stage, measurement.digest, tuple((n, 0) for n in names))
        return ids

    def revoke(self, measurement: Measurement, reason: str = "") -> Revoked:
        """Deny `measurement` everything from now on; what it received, to be rotated."""
        new = self.state.add_revocation(measurement.digest, self._now(), reason)
        self._log("measurement-revoked", "done", "", measurement.digest, (), "", reason)
        received: dict[str, int] = {}
        for row in self.state.log_rows():
            entry = decode_entry(row.entry)
            if entry["outcome"] == "released" and entry["measurement"] == measurement.hex:
                for name, version in entry["secrets"]:
                    received[name] = max(version, received.get(name, 0))
        return Revoked(new, tuple(sorted(received.items())))

    def _log(
        self,
        event: str,
        outcome: str,
        stage: str = "",
        measurement: bytes | None = None,
        secrets: tuple[tuple[str, int], ...] = (),
        backend: str = "",
        reason: str = "",
        assurance: str = "",
    ) -> LogRow:
        at = self.clock()
        with self._log_lock:
            tree = self._tree or MerkleTree(r.leaf_hash for r in self.state.log_rows())
            self._tree = None  # if the append fails, the tree may be ahead of the state
            row = self.state.append_log(
                lambda seq: LogEntry(
                    seq, at, event, outcome, stage, measurement, secrets, backend, reason, assurance
                ),
                self.vault.head_mac,
                tree,
            )
            self._tree = tree
        return row
