"""Hypothesis strategies for headers and subscriptions over a small shared vocabulary."""

from __future__ import annotations

from hypothesis import strategies as st

from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.publication import Header
from meterseal.dissemination.subscription import Op, Predicate, Subscription

REGIONS = ("R01", "R02", "R10", "S1")
CUSTOMERS = (b"", b"\x01", b"\x01\x02", b"\x02")
TYPES = ("reading", "customer_load", "regional_load")
# Few distinct values, so that predicates and headers often meet.
values = {
    "region": st.sampled_from(REGIONS),
    "customer": st.sampled_from(CUSTOMERS),
    "type": st.sampled_from(TYPES),
    "start": st.sampled_from((0, 900, 1800, 3600)),
    "seq": st.integers(0, 4),
    "publisher": st.sampled_from(("p1", "p2")),
    "quality": st.one_of(st.integers(0, 3), st.sampled_from(("ok", "est"))),
    "level": st.sampled_from([int(lv) for lv in PrivacyLevel]),
}
literal = st.one_of(
    st.integers(-5, 4000), st.sampled_from(REGIONS + TYPES), st.sampled_from(CUSTOMERS)
)


@st.composite
def predicates(draw: st.DrawFn) -> Predicate:
    """A predicate, usually on a value of the attribute's own kind, sometimes not."""
    attribute = draw(st.sampled_from(sorted(values)))
    same_kind = values[attribute]
    op = draw(st.sampled_from(list(Op)))
    if op is Op.IN:
        choices = draw(st.lists(st.one_of(same_kind, literal), min_size=1, max_size=4))
        return Predicate(attribute, op, frozenset(choices))
    if op is Op.PREFIX:
        value = draw(st.one_of(st.sampled_from(("R", "R0", "S", "reg", "")), st.binary(max_size=2)))
        return Predicate(attribute, op, value)
    return Predicate(attribute, op, draw(st.one_of(same_kind, same_kind, literal)))


subscriptions = st.lists(predicates(), max_size=4).map(lambda ps: Subscription(tuple(ps)))


@st.composite
def headers(draw: st.DrawFn) -> Header:
    """A header over the shared vocabulary, with an optional extra attribute."""
    attrs = draw(st.dictionaries(st.just("quality"), values["quality"], max_size=1))
    return Header(
        PrivacyLevel(draw(values["level"])),
        draw(values["type"]),
        draw(values["publisher"]),
        draw(values["seq"]),
        draw(st.integers(0, 2**62)),
        draw(values["region"]),
        draw(values["customer"]),
        draw(values["start"]),
        draw(st.sampled_from((0, 900, 3600))),
        draw(st.integers(0, 3)),
        draw(st.integers(0, 3)),
        attrs,
    )
