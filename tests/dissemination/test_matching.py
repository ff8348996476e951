"""The indexed matching engine agrees with the naive matcher, also at 10,000 subscriptions."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.matching import MatchingEngine, NaiveMatcher
from meterseal.dissemination.publication import Header, decode_header
from meterseal.dissemination.subscription import Subscription, parse
from tests.dissemination.strategies import headers, subscriptions

levels = st.sampled_from(list(PrivacyLevel))


def _both(subs: list[tuple[PrivacyLevel, Subscription]]) -> tuple[MatchingEngine, NaiveMatcher]:
    engine, naive = MatchingEngine(), NaiveMatcher()
    for ident, (level, sub) in enumerate(subs):
        engine.add(ident, level, sub)
        naive.add(ident, level, sub)
    return engine, naive


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(levels, subscriptions), max_size=30), st.lists(headers(), max_size=8))
def test_engine_matches_exactly_what_the_naive_matcher_matches(
    subs: list[tuple[PrivacyLevel, Subscription]], published: list[Header]
) -> None:
    engine, naive = _both(subs)
    for header in published:
        fields = decode_header(header.encode())
        assert sorted(engine.match(fields)) == sorted(naive.match(header))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(levels, subscriptions), min_size=1, max_size=20),
    st.data(),
    st.lists(headers(), max_size=5),
)
def test_removed_subscriptions_never_match_again(
    subs: list[tuple[PrivacyLevel, Subscription]], data: st.DataObject, published: list[Header]
) -> None:
    engine, naive = _both(subs)
    gone = data.draw(st.sets(st.integers(0, len(subs) - 1)))
    for ident in gone:
        engine.remove(ident)
        naive.remove(ident)
    for header in published:
        hits = engine.match(decode_header(header.encode()))
        assert not gone & set(hits)
        assert sorted(hits) == sorted(naive.match(header))


def _bench_like_subscriptions(count: int, rng: random.Random) -> list[Subscription]:
    """The shapes a deployment has: per-customer apps, regional views, a few scans."""
    subs = []
    for i in range(count):
        kind = i % 10
        if kind < 7:
            subs.append(parse(f"customer = h'{i:08x}' and start >= {rng.randrange(0, 7200)}"))
        elif kind < 9:
            subs.append(
                parse(f'region in ("R{i % 50:02d}", "R{(i + 1) % 50:02d}") and type = reading')
            )
        else:
            subs.append(parse(f"start < {rng.randrange(0, 7200)} and interval != 60"))
    return subs


def test_ten_thousand_subscriptions_agree_with_the_naive_matcher() -> None:
    rng = random.Random(4)
    subs = [(PrivacyLevel.HIGH, s) for s in _bench_like_subscriptions(10_000, rng)]
    engine, naive = _both(subs)
    assert len(engine) == 10_000
    for n in range(60):
        customer = f"{rng.randrange(0, 10_000):08x}"
        header = Header(
            PrivacyLevel.HIGH, "reading", "p", n, 0, f"R{rng.randrange(0, 60):02d}",
            bytes.fromhex(customer), rng.randrange(0, 7200), 900,
        )  # fmt: skip
        assert sorted(engine.match(decode_header(header.encode()))) == sorted(naive.match(header))


def test_a_subscription_at_one_level_never_sees_another() -> None:
    engine = MatchingEngine()
    engine.add(1, PrivacyLevel.LOW, Subscription())
    engine.add(2, PrivacyLevel.HIGH, parse('region = "R01"'))
    high = Header(PrivacyLevel.HIGH, "reading", "p", 1, 0, "R01", b"\x01")
    low = Header(PrivacyLevel.LOW, "regional_load", "p", 1, 0, "R01")
    assert engine.match(decode_header(high.encode())) == [2]
    assert engine.match(decode_header(low.encode())) == [1]
