"""Erasure coding: any k of k + m fragments rebuild the data; sizes as policy.raw_bytes says."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.errors import KvsError
from meterseal.kvs.erasure import coder
from meterseal.kvs.policy import fragment_size

SHAPES = [(1, 1), (2, 1), (3, 2), (4, 2), (6, 2)]


@settings(max_examples=30)
@given(st.sampled_from(SHAPES), st.binary(min_size=1, max_size=5000))
def test_every_k_subset_decodes_and_rebuilds(shape: tuple[int, int], data: bytes) -> None:
    k, m = shape
    code = coder(k, m)
    fragments = code.encode(data)
    assert len(fragments) == k + m
    if code.backend == "isa_l_rs_vand":
        assert {len(f) for f in fragments} == {fragment_size(len(data), k)}
    for kept in itertools.combinations(range(k + m), k):
        assert code.decode({i: fragments[i] for i in kept}) == data
    missing = [i for i in range(k + m) if i not in kept]
    rebuilt = code.rebuild({i: fragments[i] for i in kept}, missing)
    assert rebuilt == {i: fragments[i] for i in missing}
    assert [code.fragment_index(f) for f in fragments] == list(range(k + m))


def test_too_few_fragments_or_garbage_is_a_kvs_error() -> None:
    code = coder(3, 2)
    fragments = code.encode(b"x" * 300)
    with pytest.raises(KvsError, match="cannot rebuild"):
        code.decode({0: fragments[0], 4: fragments[4]})
    with pytest.raises(KvsError, match="cannot rebuild"):
        code.rebuild({0: fragments[0]}, [1])
    with pytest.raises(KvsError):
        code.fragment_index(b"not a fragment" * 10)


def test_the_fast_backend_is_the_one_in_use() -> None:
    assert coder(6, 2).backend == "isa_l_rs_vand"
