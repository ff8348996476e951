"""Release policies: which measurement may receive which secret. Composable, fail closed.

A policy answers one `Query` (measurement, stage, secret) with ALLOW, DENY or ABSTAIN
(not applicable). `release_decision` turns that into a yes/no and fails closed: only an
ALLOW releases; ABSTAIN (nothing applies, an empty policy) and DENY refuse, and so does a
policy that raises.

* `AllowMeasurement(measurement, secrets, stage)`: ALLOW those secrets to that measurement,
  and only to a query labelled with the rule's stage when the rule names one (a worker
  claiming another stage's label gets nothing from the rule).
* `RevokedMeasurements(measurements)`: DENY everything to a revoked measurement.
* `AnyOf(policies)`: deny-overrides. DENY if any part denies (or raises), else ALLOW if
  any part allows, else ABSTAIN. An empty AnyOf abstains, so it refuses.
* `AllOf(policies)`: every part must ALLOW. DENY if any part denies (or raises), ABSTAIN
  if any abstains or there are no parts.
* `UnsafeReleaseAll()`: ALLOW everything, for tests only; revocation still overrides it
  inside an `AnyOf`.

`refusal_hint` tells the operator what a refusal by the stored allow rules means (a missing
policy, a modified worker, a wrong stage label) and which command allows it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from meterseal.trust.measurement import Measurement
from meterseal.trust.stages import STAGE_PROVISIONING
from meterseal.trust.state import PolicyRule


class Effect(enum.StrEnum):
    """A policy's answer to one query."""

    ALLOW = "allow"
    DENY = "deny"
    ABSTAIN = "abstain"


@dataclass(frozen=True)
class Query:
    """May `measurement` (which says it runs `stage`) receive `secret`?"""

    measurement: Measurement
    stage: str
    secret: str


@dataclass(frozen=True)
class Decision:
    """An effect and the one-line reason for it."""

    effect: Effect
    reason: str

    @property
    def allowed(self) -> bool:
        """True only for ALLOW (fail closed)."""
        return self.effect is Effect.ALLOW


_ABSTAIN = Decision(Effect.ABSTAIN, "no rule applies")


class Policy(Protocol):
    """Decides one query; may raise (callers treat that as DENY)."""

    def decide(self, query: Query) -> Decision:
        """ALLOW, DENY or ABSTAIN, with a reason."""
        ...


def _safely(policy: Policy, query: Query) -> Decision:
    try:
        decision = policy.decide(query)
    except Exception as exc:  # a broken rule must refuse, never release
        return Decision(Effect.DENY, f"policy error in {type(policy).__name__}: {exc}")
    if not isinstance(decision, Decision) or not isinstance(decision.effect, Effect):
        return Decision(Effect.DENY, f"policy {type(policy).__name__} gave no decision")
    return decision


@dataclass(frozen=True)
class AllowMeasurement:
    """ALLOW `secrets` to one measurement, under the rule's `stage` label if it names one."""

    measurement: Measurement
    secrets: frozenset[str]
    stage: str = ""

    def decide(self, query: Query) -> Decision:
        """ALLOW on a match of measurement, secret and (if set) stage, else ABSTAIN."""
        if self.stage and query.stage != self.stage:
            return _ABSTAIN
        if query.measurement == self.measurement and query.secret in self.secrets:
            label = f" ({self.stage})" if self.stage else ""
            return Decision(Effect.ALLOW, f"measurement {self.measurement.short}{label} allowed")
        return _ABSTAIN


@dataclass(frozen=True)
class RevokedMeasurements:
    """DENY every secret to a revoked measurement."""

    measurements: frozenset[Measurement]

    def decide(self, query: Query) -> Decision:
        """DENY if revoked, else ABSTAIN."""
        if query.measurement in self.measurements:
            return Decision(Effect.DENY, f"measurement {query.measurement.short} is revoked")
        return _ABSTAIN


@dataclass(frozen=True)
class AnyOf:
    """Deny-overrides: any DENY wins, then any ALLOW; nothing applicable abstains."""

    policies: tuple[Policy, ...]

    @classmethod
    def of(cls, policies: Iterable[Policy]) -> AnyOf:
        """An AnyOf over `policies`."""
        return cls(tuple(policies))

    def decide(self, query: Query) -> Decision:
        """See the class."""
        allow = None
        for policy in self.policies:
            decision = _safely(policy, query)
            if decision.effect is Effect.DENY:
                return decision
            if decision.effect is Effect.ALLOW and allow is None:
                allow = decision
        return allow or _ABSTAIN


@dataclass(frozen=True)
class AllOf:
    """Every part must ALLOW; any DENY denies; an abstaining part (or no part) abstains."""

    policies: tuple[Policy, ...]

    def decide(self, query: Query) -> Decision:
        """See the class."""
        if not self.policies:
            return Decision(Effect.ABSTAIN, "an empty AllOf allows nothing")
        decisions = [_safely(policy, query) for policy in self.policies]
        for effect in (Effect.DENY, Effect.ABSTAIN):
            found = next((d for d in decisions if d.effect is effect), None)
            if found is not None:
                return found
        return Decision(Effect.ALLOW, "; ".join(d.reason for d in decisions))


@dataclass(frozen=True)
class UnsafeReleaseAll:
    """ALLOW every secret to every measurement. Tests only: never configure it."""

    def decide(self, query: Query) -> Decision:
        """ALLOW."""
        return Decision(Effect.ALLOW, "UnsafeReleaseAll (tests only)")


def release_decision(policy: Policy, query: Query) -> Decision:
    """The final answer: ALLOW only on an explicit ALLOW; ABSTAIN becomes DENY."""
    decision = _safely(policy, query)
    if decision.effect is Effect.ABSTAIN:
        label = f" (stage {query.stage})" if query.stage else ""
        return Decision(
            Effect.DENY,
            f"measurement {query.measurement.short}{label} is not allowed secret {query.secret!r}",
        )
    return decision


def refusal_hint(
    rules: Sequence[PolicyRule], measurement: Measurement, stage: str, name: str, reason: str
) -> str:
    """What the operator should know of a refusal by `rules`: a missing policy, a modified
    worker, or a wrong stage label."""
    if "revoked" in reason:
        return ""
    labels = sorted(
        {
            r.stage
            for r in rules
            if r.measurement == measurement.digest and r.secret == name and r.stage != stage
        }
    )
    if labels:  # the measurement is allowed the secret, but under another stage's label
        return (
            f"; stage label mismatch: the request claims stage {stage!r}, the policy rule "
            f"for this measurement and secret {name!r} says {', '.join(map(repr, labels))}"
        )
    others = sorted(
        {r.measurement.hex()[:12] for r in rules if r.stage == stage and r.secret == name}
        - {measurement.hex[:12]}
    )
    # A stage with a provisioning command of its own is allowed by it: a bare policy rule
    # would lack the secrets that command creates with it.
    own = STAGE_PROVISIONING.get(stage)
    policy_add = f"`meterseal cas policy add --stage {stage} --secret {name}`"
    if not others:  # nobody may have it as this stage: the operator added no rule for it
        return (
            f": no policy lets stage {stage} receive {name!r} (missing policy); add one with "
            f"{own or policy_add}"
        )
    # The stage may have the secret, as other code: this worker is not the allowed build.
    # Often it is the operator's own upgrade or new configuration: say how to allow it.
    allow = own or f"`meterseal init DIR --force` or {policy_add}"
    return (
        f" (code modified?); the policy lets stage {stage} run as "
        f"{', '.join(o + '…' for o in others)}; if this build or configuration is meant "
        f"to run (an upgrade), allow it: {allow}"
    )
