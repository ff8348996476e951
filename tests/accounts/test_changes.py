"""The administrators' change log's hash chain: any one field of any entry changed breaks it."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from meterseal.accounts.changes import GENESIS, Change, ChangeRequest, chain_digest, check_chain

texts = st.text(max_size=40)
requests = st.builds(
    ChangeRequest,
    at=st.floats(min_value=0, max_value=2**40, allow_nan=False),
    subject=texts,
    roles=texts,
    action=texts,
    object_id=texts,
    outcome=texts,
    detail=texts,
)
FIELDS = [f.name for f in dataclasses.fields(ChangeRequest) if f.name != "at"]


def chained(items: list[ChangeRequest]) -> list[Change]:
    """The changes as a store appends them."""
    out, previous = [], GENESIS
    for n, request in enumerate(items, 1):
        digest = chain_digest(previous, request)
        out.append(Change(n, request, previous, digest))
        previous = digest
    return out


@given(st.lists(requests, min_size=1, max_size=6), st.data())
def test_a_changed_field_or_a_removed_entry_breaks_the_chain(
    items: list[ChangeRequest], data: st.DataObject
) -> None:
    log = chained(items)
    assert check_chain(log) == []
    at = data.draw(st.integers(0, len(log) - 1))
    name = data.draw(st.sampled_from(FIELDS))
    victim = log[at]
    altered = dataclasses.replace(victim.request, **{name: getattr(victim.request, name) + "x"})
    edited = [*log[:at], dataclasses.replace(victim, request=altered), *log[at + 1 :]]
    assert check_chain(edited) == [f"entry {victim.id} differs from what was recorded"]
    moved = dataclasses.replace(victim.request, at=victim.request.at + 1)
    assert check_chain([*log[:at], dataclasses.replace(victim, request=moved), *log[at + 1 :]])
    if len(log) > 1 and at < len(log) - 1:  # the entry after a removed one no longer follows
        assert check_chain([*log[:at], *log[at + 1 :]]) == [
            f"entry {log[at + 1].id} does not follow the entry before it"
        ]
