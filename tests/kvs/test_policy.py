"""Policies: parse/str round trips, node counts, exact raw bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.errors import KvsError
from meterseal.kvs.policy import (
    ErasureCoded,
    Hybrid,
    Policy,
    Replication,
    chunk_sizes,
    parse_policy,
    raw_bytes,
)

policies: st.SearchStrategy[Policy] = st.one_of(
    st.builds(Replication, st.integers(1, 32)),
    st.tuples(st.sampled_from([ErasureCoded, Hybrid]), st.integers(1, 31)).flatmap(
        lambda kind_k: st.integers(1, 32 - kind_k[1]).map(lambda m: kind_k[0](kind_k[1], m))
    ),
)


@given(policies)
def test_str_and_parse_round_trip(policy: Policy) -> None:
    assert parse_policy(str(policy)) == policy


@pytest.mark.parametrize(
    "text", ["", "rep:0", "rep:-1", "ec:6", "ec:0+2", "ec:6+0", "ec:30+3", "hybrid:6+2+1", "raid5"]
)
def test_bad_policies_are_refused(text: str) -> None:
    with pytest.raises(KvsError):
        parse_policy(text)


def test_node_counts() -> None:
    assert (Replication(3).nodes_needed, Replication(3).tolerates) == (3, 2)
    assert (ErasureCoded(6, 2).nodes_needed, ErasureCoded(6, 2).tolerates) == (8, 2)
    assert (Hybrid(6, 2).nodes_needed, Hybrid(6, 2).tolerates) == (9, 3)


@given(st.integers(0, 10_000), st.integers(1, 3000))
def test_chunks_cover_the_object(size: int, chunk_size: int) -> None:
    sizes = chunk_sizes(size, chunk_size)
    assert sum(sizes) == size
    assert len(sizes) >= 1
    assert all(0 < n <= chunk_size for n in sizes[:-1])


def test_raw_bytes_of_the_papers_policies() -> None:
    size = 4 * 1024 * 1024  # one chunk: sealed 4 MiB + 16
    sealed = size + 16
    assert raw_bytes(Replication(3), size) == 3 * sealed
    fragment = 80 + -(-sealed // 6)
    assert raw_bytes(ErasureCoded(6, 2), size) == 8 * fragment
    assert raw_bytes(Hybrid(6, 2), size) == sealed + 8 * fragment
    assert raw_bytes(Replication(1), 0) == 16  # an empty object is one sealed empty chunk
