"""RFC 9162 Merkle trees: transparency-dev vectors, reference roots and Hypothesis properties."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.errors import MetersealError
from meterseal.transparency.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))

# The reference tree of RFC 6962 / transparency-dev (testonly.LeafInputs) and its roots by size.
REFERENCE_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
REFERENCE_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
REFERENCE = MerkleTree.of_leaves(REFERENCE_LEAVES)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _proof(vector: dict[str, Any]) -> list[bytes]:
    return [_b64(h) for h in vector["proof"] or []]


def _id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


# --- an independent, slow transcription of RFC 9162 section 2.1 -------------------------------


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if m < k:
        return [*_path(m, hashes[:k]), _mth(hashes[k:])]
    return [*_path(m - k, hashes[k:]), _mth(hashes[:k])]


def _subproof(m: int, hashes: list[bytes], whole: bool) -> list[bytes]:
    if m == len(hashes):
        return [] if whole else [_mth(hashes)]
    k = _split(len(hashes))
    if m <= k:
        return [*_subproof(m, hashes[:k], whole), _mth(hashes[k:])]
    return [*_subproof(m - k, hashes[k:], False), _mth(hashes[:k])]


def _hashes(count: int, salt: int = 0) -> list[bytes]:
    return [leaf_hash(f"{salt}:{i}".encode()) for i in range(count)]


# --- transparency-dev vectors -----------------------------------------------------------------


def test_the_vectors_are_there() -> None:
    assert len(INCLUSION) >= 90
    assert len(CONSISTENCY) >= 90


@pytest.mark.parametrize("path", INCLUSION, ids=_id)
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_id)
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


@pytest.mark.parametrize("path", [p for p in INCLUSION if p.name == "happy-path.json"], ids=_id)
def test_inclusion_proofs_we_make_equal_the_vectors(path: Path) -> None:
    v = _load(path)
    assert REFERENCE.inclusion_proof(v["leafIdx"], v["treeSize"]) == _proof(v)
    assert REFERENCE.root_at(v["treeSize"]) == _b64(v["root"])


@pytest.mark.parametrize("path", [p for p in CONSISTENCY if p.name == "happy-path.json"], ids=_id)
def test_consistency_proofs_we_make_equal_the_vectors(path: Path) -> None:
    v = _load(path)
    assert REFERENCE.consistency_proof(v["size1"], v["size2"]) == _proof(v)
    assert REFERENCE.root_at(v["size2"]) == _b64(v["root2"])


# --- known answers ------------------------------------------------------------------------------


def test_reference_tree_roots() -> None:
    assert [REFERENCE.root_at(k).hex() for k in range(9)] == REFERENCE_ROOTS
    assert REFERENCE.root.hex() == REFERENCE_ROOTS[8]
    assert REFERENCE.size == 8


def test_hash_primitives() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == root_of([]) == MerkleTree().root
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert root_of([a]) == a
    assert root_of([a, b]) == node_hash(a, b)


def test_a_proof_error_says_which_check_failed() -> None:
    root = REFERENCE.root
    with pytest.raises(ProofError) as caught:
        verify_inclusion(leaf_hash(b""), 0, 8, REFERENCE.inclusion_proof(0)[:-1], root)
    assert isinstance(caught.value, MetersealError)
    assert "too few hashes" in caught.value.diagnostics()


def test_the_root_does_not_commit_to_the_size() -> None:
    # RFC 9162 behaviour callers must know: a bill has to sign the size with the root.
    proof = REFERENCE.inclusion_proof(0, 3)
    verify_inclusion(leaf_hash(b""), 0, 4, proof, REFERENCE.root_at(3))
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b""), 0, 4, proof, REFERENCE.root_at(4))


# --- edge cases and input checks ----------------------------------------------------------------


def test_empty_tree() -> None:
    tree = MerkleTree()
    assert tree.size == 0
    assert tree.root_at(0) == EMPTY_ROOT
    assert tree.consistency_proof(0) == []
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ValueError, match="outside"):
        tree.inclusion_proof(0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.root_at(9), "outside"),
        (lambda t: t.root_at(-1), "outside"),
        (lambda t: t.inclusion_proof(8), "outside"),
        (lambda t: t.inclusion_proof(-1), "outside"),
        (lambda t: t.inclusion_proof(3, 3), "outside"),
        (lambda t: t.inclusion_proof(0, 9), "outside"),
        (lambda t: t.consistency_proof(5, 4), "outside"),
        (lambda t: t.consistency_proof(0, 4), "meaningless"),
        (lambda t: t.consistency_proof(-1), "outside"),
        (lambda t: t.consistency_proof(1, 9), "outside"),
        (lambda t: t.append(b"\x00" * 31), "32 bytes"),
        (lambda t: MerkleTree([b"\x00" * 33]), "32 bytes"),
    ],
)
def test_caller_bugs_raise_value_error(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(MerkleTree.of_leaves(REFERENCE_LEAVES))


@pytest.mark.parametrize(
    "args",
    [
        ("leaf", 0, 1, [], "root"),
        (leaf_hash(b""), 0, 2, ["not bytes"], EMPTY_ROOT),
        (leaf_hash(b""), 0, 2, [b"short"], EMPTY_ROOT),
        (leaf_hash(b""), 0.0, 1, [], EMPTY_ROOT),
        (leaf_hash(b""), -1, 1, [], EMPTY_ROOT),
        (leaf_hash(b""), 0, 2**64, [EMPTY_ROOT] * 200, EMPTY_ROOT),
    ],
)
def test_garbage_inclusion_input_raises_only_proof_error(args: Any) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(*args)


@pytest.mark.parametrize(
    "args",
    [
        (1, 2, EMPTY_ROOT, EMPTY_ROOT, ["not bytes"]),
        (1, 2, b"short", EMPTY_ROOT, [EMPTY_ROOT]),
        (3, 4, EMPTY_ROOT, EMPTY_ROOT, [b""]),
        (1, "2", EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        (-1, 2, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        (3, 2**64, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT] * 200),
    ],
)
def test_garbage_consistency_input_raises_only_proof_error(args: Any) -> None:
    with pytest.raises(ProofError):
        verify_consistency(*args)


# --- properties ---------------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=300)


@given(sizes)
@settings(max_examples=60)
def test_every_inclusion_and_consistency_proof_verifies(size: int) -> None:
    hashes = _hashes(size)
    tree = MerkleTree(hashes)
    root = tree.root
    for index, h in enumerate(hashes):
        verify_inclusion(h, index, size, tree.inclusion_proof(index), root)
    for old in range(1, size + 1):
        verify_consistency(old, size, tree.root_at(old), root, tree.consistency_proof(old))


@given(st.data(), sizes)
def test_proofs_equal_the_rfc_definitions(data: st.DataObject, size: int) -> None:
    hashes = _hashes(size)
    tree = MerkleTree(hashes)
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    assert tree.inclusion_proof(index) == _path(index, hashes)
    assert tree.consistency_proof(old) == _subproof(old, hashes, True)
    assert tree.root == _mth(hashes)


@given(sizes)
@settings(max_examples=30)
def test_root_at_every_prefix(size: int) -> None:
    hashes = _hashes(size)
    tree = MerkleTree(hashes)
    for k in range(size + 1):
        assert tree.root_at(k) == root_of(hashes[:k]) == _mth(hashes[:k])


@given(sizes)
@settings(max_examples=30)
def test_appending_builds_the_same_tree(size: int) -> None:
    hashes = _hashes(size)
    batch, grown = MerkleTree(hashes), MerkleTree()
    for index, h in enumerate(hashes):
        assert grown.append(h) == index
        assert grown.root == batch.root_at(index + 1)
    assert grown.size == batch.size == size
    for index in range(size):
        assert grown.inclusion_proof(index) == batch.inclusion_proof(index)


def _flip(proof: list[bytes], position: int, bit: int) -> list[bytes]:
    changed = bytearray(proof[position])
    changed[bit // 8] ^= 1 << (bit % 8)
    return [*proof[:position], bytes(changed), *proof[position + 1 :]]


@given(st.data(), st.integers(2, 300))
def test_a_flipped_bit_breaks_an_inclusion_proof(data: st.DataObject, size: int) -> None:
    hashes = _hashes(size)
    tree = MerkleTree(hashes)
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index)
    position, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_inclusion(hashes[index], index, size, _flip(proof, position, bit), tree.root)


@given(st.data(), st.integers(2, 300))
def test_a_flipped_bit_breaks_a_consistency_proof(data: st.DataObject, size: int) -> None:
    tree = MerkleTree(_hashes(size))
    old = data.draw(st.integers(1, size - 1))
    proof = tree.consistency_proof(old)
    position, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_consistency(old, size, tree.root_at(old), tree.root, _flip(proof, position, bit))


@given(st.data(), sizes)
def test_another_index_or_size_breaks_an_inclusion_proof(data: st.DataObject, size: int) -> None:
    hashes = _hashes(size + 40)
    tree = MerkleTree(hashes)
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index, size)
    other = data.draw(st.integers(0, size + 3).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        verify_inclusion(hashes[index], other, size, proof, tree.root_at(size))
    # Claimed with the true root of the claimed size, as a signed tree head would carry it.
    claimed = data.draw(st.integers(1, size + 40).filter(lambda s: s != size))
    with pytest.raises(ProofError):
        verify_inclusion(hashes[index], index, claimed, proof, tree.root_at(claimed))


@given(st.data(), st.integers(2, 300))
def test_other_sizes_break_a_consistency_proof(data: st.DataObject, size: int) -> None:
    tree = MerkleTree(_hashes(size + 40))
    old = data.draw(st.integers(1, size - 1))
    proof = tree.consistency_proof(old, size)
    old2 = data.draw(st.integers(1, size).filter(lambda s: s != old))
    with pytest.raises(ProofError):
        verify_consistency(old2, size, tree.root_at(old2), tree.root_at(size), proof)
    new2 = data.draw(st.integers(old, size + 40).filter(lambda s: s != size))
    with pytest.raises(ProofError):
        verify_consistency(old, new2, tree.root_at(old), tree.root_at(new2), proof)


@given(st.data(), sizes)
def test_root_from_inclusion_gives_the_root(data: st.DataObject, size: int) -> None:
    hashes = _hashes(size)
    tree = MerkleTree(hashes)
    index = data.draw(st.integers(0, size - 1))
    assert root_from_inclusion(hashes[index], index, size, tree.inclusion_proof(index)) == tree.root
