"""The bill's hash chain and Merkle root: any single change to the inputs changes both."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing.chain import chain_head, chain_links, chain_start, chain_step
from meterseal.billing.compute import BillPacket, chain_and_leaves, leaf_hashes
from meterseal.transparency.merkle import leaf_hash, root_of

CONTEXT = b"customer C-1, October"
packets = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=30, unique=True)


def _evidence(items: list[bytes], context: bytes = CONTEXT) -> tuple[bytes, bytes]:
    return chain_head(context, items), root_of([leaf_hash(p) for p in items])


def test_the_chain_is_the_papers_definition() -> None:
    h0 = hashlib.sha256(CONTEXT).digest()
    h1 = hashlib.sha256(h0 + hashlib.sha256(b"p1").digest()).digest()
    h2 = hashlib.sha256(h1 + hashlib.sha256(b"p2").digest()).digest()
    assert chain_start(CONTEXT) == h0
    assert chain_step(h0, b"p1") == h1
    assert chain_head(CONTEXT, [b"p1", b"p2"]) == h2
    assert chain_links(CONTEXT, [b"p1", b"p2"]) == [h1, h2]


@given(packets, st.data())
def test_any_single_change_changes_chain_and_root(items: list[bytes], data: st.DataObject) -> None:
    head, root = _evidence(items)
    i = data.draw(st.integers(0, len(items) - 1), label="index")
    change = data.draw(st.sampled_from(["alter", "drop", "insert", "swap", "duplicate"]))
    changed = list(items)
    if change == "alter":
        bit = data.draw(st.integers(0, 8 * len(items[i]) - 1), label="bit")
        flipped = bytearray(items[i])
        flipped[bit // 8] ^= 1 << (bit % 8)
        changed[i] = bytes(flipped)
    elif change == "drop":
        del changed[i]
    elif change == "insert":
        extra = data.draw(st.binary(min_size=1, max_size=40).filter(lambda b: b not in items))
        changed.insert(i, extra)
    elif change == "duplicate":
        changed.insert(i, items[i])
    else:
        j = data.draw(st.integers(0, len(items) - 1).filter(lambda j: j != i), label="other")
        changed[i], changed[j] = changed[j], changed[i]
    if not changed:
        assert head != chain_head(CONTEXT, [])
        assert root != root_of([])
        return
    new_head, new_root = _evidence(changed)
    assert new_head != head
    assert new_root != root


@given(packets, st.binary(max_size=40))
def test_another_context_changes_the_chain(items: list[bytes], other: bytes) -> None:
    if other != CONTEXT:
        assert chain_head(other, items) != chain_head(CONTEXT, items)


@given(packets, st.binary(max_size=40))
def test_the_one_pass_evidence_equals_chain_and_leaves_computed_apart(
    items: list[bytes], context: bytes
) -> None:
    rows = [BillPacket("M-1", n, 900 * n, 10, data) for n, data in enumerate(items)]
    head, leaves = chain_and_leaves(context, rows)
    assert head == chain_head(context, items)
    assert leaves == [leaf_hash(p) for p in items] == leaf_hashes(rows)
