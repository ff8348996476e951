"""The bill's C extension gives the Python definitions' bytes and refuses what they refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.billing import bill, chain, hashing
from meterseal.transparency.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, root_of

packets = st.lists(st.binary(max_size=300), max_size=70)
hashes = st.lists(st.binary(min_size=32, max_size=32), max_size=300)


def _native() -> ModuleType:
    if hashing.NATIVE is None:
        pytest.skip(
            "meterseal.billing._hashes is not built (no C compiler or OpenSSL headers at "
            f"install time, or {hashing.PURE_PYTHON_ENV}=1): billing hashes in Python"
        )
    return hashing.NATIVE


@given(packets, st.binary(max_size=60))
def test_the_native_chain_head_is_the_chain_of_the_definition(
    items: list[bytes], context: bytes
) -> None:
    assert _native().chain_head(context, items) == chain.chain_head(context, items)


@given(packets, st.binary(max_size=60))
def test_the_native_chain_and_leaves_equal_the_python_pass(
    items: list[bytes], context: bytes
) -> None:
    native = _native().chain_and_leaves(context, items)
    assert native == hashing.py_chain_and_leaves(context, items)
    assert native[1] == [leaf_hash(p) for p in items] == _native().leaf_hashes(items)


@given(hashes)
def test_the_native_merkle_root_is_rfc_9162s(leaves: list[bytes]) -> None:
    assert _native().merkle_root(leaves) == root_of(leaves) == MerkleTree(leaves).root


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 9, 1023, 1024, 1025, 2880])
def test_the_native_merkle_root_at_every_tree_shape_boundary(size: int) -> None:
    leaves = [leaf_hash(n.to_bytes(4, "big")) for n in range(size)]
    assert _native().merkle_root(leaves) == root_of(leaves)
    assert size or _native().merkle_root(leaves) == EMPTY_ROOT


def test_the_native_functions_refuse_what_is_not_bytes() -> None:
    native = _native()
    with pytest.raises(TypeError, match="item 1 is not bytes"):
        native.chain_head(b"context", [b"a", "b"])
    with pytest.raises(TypeError):
        native.chain_and_leaves("context", [b"a"])
    with pytest.raises(TypeError, match="item 0 is not bytes"):
        native.leaf_hashes([bytearray(b"a")])
    with pytest.raises(TypeError):
        native.merkle_root(None)


def test_a_leaf_hash_of_another_length_is_refused_by_both() -> None:
    leaves = [bytes(32), bytes(31)]
    with pytest.raises(ValueError, match="leaf hash 1 is not 32 bytes"):
        _native().merkle_root(leaves)
    with pytest.raises(ValueError, match="32 bytes"):
        root_of(leaves)


def test_the_native_functions_take_any_sequence_and_leave_it_alone() -> None:
    items = (b"one", b"two", b"three")
    native = _native()
    assert native.chain_and_leaves(b"c", items) == hashing.py_chain_and_leaves(b"c", list(items))
    assert native.chain_head(b"c", iter(items)) == chain.chain_head(b"c", items)
    assert items == (b"one", b"two", b"three")


def test_the_environment_switch_selects_the_python_functions() -> None:
    code = (
        "from meterseal.billing import hashing, chain;"
        "from meterseal.transparency import merkle;"
        "assert hashing.NATIVE is None;"
        "assert hashing.chain_head is chain.chain_head;"
        "assert hashing.merkle_root is merkle.root_of;"
        "from meterseal.billing import bill; assert bill._native_manifest is None;"
        "print(hashing.IMPLEMENTATION)"
    )
    env = {**os.environ, hashing.PURE_PYTHON_ENV: "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "Python (hashlib)"


counters = st.integers(0, 2**64 - 1) | st.sampled_from(
    [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["M-1", "M-2", "", "Zähler-ü", "x" * 300]) | st.text(max_size=30),
            counters,
            st.binary(min_size=32, max_size=32),
        ),
        max_size=80,
    )
)
def test_the_native_manifest_is_the_python_encoders_bytes(
    entries: list[tuple[str, int, bytes]],
) -> None:
    columns = [list(c) for c in zip(*entries, strict=True)] if entries else [[], [], []]
    encoded = _native().encode_manifest(*columns)
    assert encoded == bill.py_encode_manifest(*columns)
    assert encoded == bill.encode_manifest(*columns)


class _Text(str):
    """A str subclass: the C encoder leaves it to Python."""


class _Number(int):
    """An int subclass: the C encoder leaves it to Python."""


@pytest.mark.parametrize(
    "entry",
    [
        ("M-1", -1, bytes(32)),
        ("M-1", 2**64, bytes(32)),
        ("M-1", True, bytes(32)),
        ("M-1", _Number(5), bytes(32)),
        ("M-1", 5, bytes(31)),
        ("M-1", 5, bytes(33)),
        ("M-1", 5, bytearray(32)),
        (b"M-1", 5, bytes(32)),
        (_Text("M-1"), 5, bytes(32)),
        ("\ud800", 5, bytes(32)),
        (None, 5, bytes(32)),
    ],
)
def test_the_native_manifest_declines_an_entry_off_its_shape(entry: tuple[object, ...]) -> None:
    columns = [["M-0", entry[0]], [1, entry[1]], [bytes(32), entry[2]]]
    assert _native().encode_manifest(*columns) is None
    try:
        expected: object = bill.py_encode_manifest(*columns)  # type: ignore[arg-type]
    except Exception as exc:  # the Python encoder's own verdict, whatever it is
        expected = type(exc)
    try:
        got: object = bill.encode_manifest(*columns)  # type: ignore[arg-type]
    except Exception as exc:
        got = type(exc)
    assert got == expected


def test_the_native_manifest_declines_columns_of_different_lengths() -> None:
    assert _native().encode_manifest(["M-1"], [1, 2], [bytes(32)]) is None
    with pytest.raises(TypeError):
        _native().encode_manifest(["M-1"], 1, [bytes(32)])


@pytest.mark.parametrize(
    ("entries", "meter_id"),
    [(255, "M-1"), (256, "M-1"), (65_536, "M-1"), (3, "m" * 65_536), (2, "ü" * 40_000)],
)
def test_the_native_manifest_at_array_and_text_head_boundaries(entries: int, meter_id: str) -> None:
    columns = ([meter_id] * entries, list(range(entries)), [bytes(32)] * entries)
    encoded = _native().encode_manifest(*columns)
    assert encoded == bill.py_encode_manifest(*columns)
