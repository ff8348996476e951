"""Subscriptions: the text syntax, the CBOR form, and what each operator means."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from meterseal.dissemination.errors import MalformedSubscription
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.subscription import (
    AttrValue,
    Op,
    Predicate,
    Subscription,
    from_cbor,
    make_predicate,
    parse,
)
from tests.dissemination.strategies import subscriptions


def test_the_text_syntax() -> None:
    sub = parse(
        "level = high and region in (\"R01\", R02) and customer prefix h'01ff' and "
        "start >= 3600 and start < 7200 and type != regional_load and quality == -1"
    )
    assert sub.predicates == (
        Predicate("level", Op.EQ, int(PrivacyLevel.HIGH)),
        Predicate("region", Op.IN, frozenset({"R01", "R02"})),
        Predicate("customer", Op.PREFIX, b"\x01\xff"),
        Predicate("start", Op.GE, 3600),
        Predicate("start", Op.LT, 7200),
        Predicate("type", Op.NE, "regional_load"),
        Predicate("quality", Op.EQ, -1),
    )
    assert parse("") == Subscription()
    assert parse('region = "a \\"quoted\\" name"').predicates[0].value == 'a "quoted" name'


@pytest.mark.parametrize(
    "text",
    [
        "region",
        "region =",
        "= 3",
        "region = 1 or start = 2",
        "region in ()",
        "region in (1, 2",
        "region in 1",
        "region prefix 3",
        "Region = 1",
        "level = extreme",
        "customer = h'abc'",
        "start = 99999999999999999999",
        "region = 'single'",
        "region = 1 and",
        'region = "' + "x" * 65 + '"',
        " and ".join(["a = 1"] * 17),
        "a = 1 2",
        "a ~ 1",
    ],
)
def test_malformed_text_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(MalformedSubscription) as refused:
        parse(text)
    assert refused.value.reason.value == "malformed_subscription"


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"\xff",
        b"\xa0",
        b"\x81\x83\x61a\x62~~\x01",
        b"\x81\x82\x61a\x61=",
        b"\x81\x83\x01\x61=\x01",
    ],
)
def test_malformed_cbor_is_refused(encoded: bytes) -> None:
    with pytest.raises(MalformedSubscription):
        from_cbor(encoded)


def _valid(predicate: Predicate) -> bool:
    try:
        return make_predicate(predicate.attribute, predicate.op, predicate.value) == predicate
    except MalformedSubscription:
        return False


@settings(max_examples=200)
@given(subscriptions)
def test_text_and_cbor_round_trip(sub: Subscription) -> None:
    sub = Subscription(tuple(p for p in sub.predicates if _valid(p)))
    assert from_cbor(sub.to_cbor()) == sub
    assert parse(sub.text()) == sub


def test_operators_on_values_of_other_types_never_match() -> None:
    attributes: dict[str, AttrValue] = {"start": 900, "region": "R01", "customer": b"\x01"}
    assert not parse('start = "900"').matches(attributes)
    assert not parse("region < 5").matches(attributes)
    assert not parse('customer prefix "R"').matches(attributes)
    assert not parse("missing != 1").matches(attributes)
    assert parse('start in (900, "x") and region prefix "R" and region <= "R01"').matches(
        attributes
    )


def test_admits_level() -> None:
    assert parse("level >= moderate").admits_level(PrivacyLevel.HIGH)
    assert not parse("level = low").admits_level(PrivacyLevel.HIGH)
    assert Subscription().admits_level(PrivacyLevel.LOW)
