"""Policies compose and fail closed: only an explicit ALLOW, never overridden, releases."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from meterseal.trust.measurement import Measurement
from meterseal.trust.policy import (
    AllOf,
    AllowMeasurement,
    AnyOf,
    Decision,
    Effect,
    Policy,
    Query,
    RevokedMeasurements,
    UnsafeReleaseAll,
    release_decision,
)

GOOD = Measurement(b"\x01" * 32)
OTHER = Measurement(b"\x02" * 32)
QUERY = Query(GOOD, "open-verify", "headend-keys")


@dataclass(frozen=True)
class Fixed:
    """A leaf policy with a fixed effect."""

    effect: Effect

    def decide(self, query: Query) -> Decision:
        return Decision(self.effect, f"fixed {self.effect}")


class Broken:
    """A leaf policy that raises."""

    def decide(self, query: Query) -> Decision:
        raise RuntimeError("rule table unreadable")


def test_an_allow_rule_matches_measurement_and_secret_only() -> None:
    rule = AllowMeasurement(GOOD, frozenset({"headend-keys"}), "open-verify")
    assert release_decision(rule, QUERY).allowed
    assert not release_decision(rule, Query(OTHER, "open-verify", "headend-keys")).allowed
    assert not release_decision(rule, Query(GOOD, "open-verify", "billing-key")).allowed
    assert not release_decision(rule, Query(GOOD, "billing", "headend-keys")).allowed
    unlabelled = AllowMeasurement(GOOD, frozenset({"headend-keys"}))
    assert release_decision(unlabelled, Query(GOOD, "billing", "headend-keys")).allowed


def test_nothing_applicable_is_a_refusal_naming_the_measurement_and_secret() -> None:
    decision = release_decision(AnyOf(()), QUERY)
    assert decision.effect is Effect.DENY
    assert decision.reason == (
        f"measurement {GOOD.hex[:12]}… (stage open-verify) is not allowed secret 'headend-keys'"
    )
    assert not release_decision(AllOf(()), QUERY).allowed


def test_revocation_overrides_every_allow_even_unsafe_release_all() -> None:
    revoked = RevokedMeasurements(frozenset({GOOD}))
    allow = AllowMeasurement(GOOD, frozenset({"headend-keys"}))
    for parts in ((allow, revoked), (revoked, UnsafeReleaseAll()), (UnsafeReleaseAll(), revoked)):
        decision = release_decision(AnyOf(parts), QUERY)
        assert decision.effect is Effect.DENY
        assert "revoked" in decision.reason
    assert release_decision(AnyOf((UnsafeReleaseAll(),)), QUERY).allowed


def test_a_raising_or_lying_policy_refuses() -> None:
    assert not release_decision(Broken(), QUERY).allowed
    assert "rule table unreadable" in release_decision(Broken(), QUERY).reason
    assert not release_decision(AnyOf((UnsafeReleaseAll(), Broken())), QUERY).allowed

    class Lying:
        def decide(self, query: Query) -> object:
            return True

    assert not release_decision(Lying(), QUERY).allowed  # type: ignore[arg-type]


def test_all_of_needs_every_part_to_allow() -> None:
    allow = Fixed(Effect.ALLOW)
    assert release_decision(AllOf((allow, allow)), QUERY).allowed
    assert not release_decision(AllOf((allow, Fixed(Effect.ABSTAIN))), QUERY).allowed
    assert not release_decision(AllOf((allow, Fixed(Effect.DENY))), QUERY).allowed


LEAVES: st.SearchStrategy[Policy] = st.sampled_from(
    [Fixed(Effect.ALLOW), Fixed(Effect.DENY), Fixed(Effect.ABSTAIN), Broken()]
)
TREES: st.SearchStrategy[Policy] = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4).map(lambda p: AnyOf(tuple(p)))
        | st.lists(children, max_size=4).map(lambda p: AllOf(tuple(p)))
    ),
    max_leaves=12,
)


def _reference(policy: Policy) -> Effect:
    """What the combinators promise, written out plainly."""
    if isinstance(policy, Fixed):
        return policy.effect
    if isinstance(policy, Broken):
        return Effect.DENY
    effects = [_reference(p) for p in policy.policies]  # type: ignore[attr-defined]
    if Effect.DENY in effects:
        return Effect.DENY
    if isinstance(policy, AnyOf):
        return Effect.ALLOW if Effect.ALLOW in effects else Effect.ABSTAIN
    if not effects or Effect.ABSTAIN in effects:
        return Effect.ABSTAIN
    return Effect.ALLOW


@given(TREES)
def test_composition_matches_the_reference_and_fails_closed(policy: Policy) -> None:
    decision = release_decision(policy, QUERY)
    assert decision.allowed == (_reference(policy) is Effect.ALLOW)
    if decision.allowed:
        assert decision.effect is Effect.ALLOW


@given(TREES)
def test_adding_a_denial_never_releases(policy: Policy) -> None:
    for combined in (AnyOf((policy, Fixed(Effect.DENY))), AnyOf((Broken(), policy))):
        assert not release_decision(combined, QUERY).allowed
