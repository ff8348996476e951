"""Hypothesis strategies for headers and subscriptions over a small shared vocabulary."""

from __future__ import annotations

from hypothesis import strategies as st

from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.publication import AttrValue, Header
from meterseal.dissemination.subscription import Op, Predicate, Subscription

REGIONS = ("R01", "R02", "R10", "S1")
CUSTOMERS = (b"", b"\x01", b"\x01\x02", b"\x02")
TYPES = ("reading", "customer_load", "regional_load")
# Few distinct values, so that predicates and headers often meet.
regions = st.sampled_from(REGIONS)
customers = st.sampled_from(CUSTOMERS)
types = st.sampled_from(TYPES)
starts = st.sampled_from((0, 900, 1800, 3600))
seqs = st.integers(0, 4)
publishers = st.sampled_from(("p1", "p2"))
qualities = st.one_of(st.integers(0, 3), st.sampled_from(("ok", "est")))
levels = st.sampled_from([int(lv) for lv in PrivacyLevel])
values: dict[str, st.SearchStrategy[AttrValue]] = {
    "region": regions,
    "customer": customers,
    "type": types,
    "start": starts,
    "seq": seqs,
    "publisher": publishers,
    "quality": qualities,
    "level": levels,
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
    attrs: dict[str, AttrValue] = draw(st.dictionaries(st.just("quality"), qualities, max_size=1))
    return Header(
        PrivacyLevel(draw(levels)),
        draw(types),
        draw(publishers),
        draw(seqs),
        draw(st.integers(0, 2**62)),
        draw(regions),
        draw(customers),
        draw(starts),
        draw(st.sampled_from((0, 900, 3600))),
        draw(st.integers(0, 3)),
        draw(st.integers(0, 3)),
        attrs,
    )
