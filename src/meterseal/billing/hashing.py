"""A bill's bulk hashing: the chain head, the RFC 9162 leaf hashes and the Merkle root.

A 2,880-packet bill takes ~17,000 SHA-256 calls (compute, check and audit), and from Python
each costs several times the digest itself. `meterseal.billing._hashes`, an optional C
extension over OpenSSL built at install time, does the same work a list at a time; where it
is not built (no compiler or no OpenSSL headers), or MS_PURE_PYTHON_HASHES=1 is set, the
Python functions here do it. Both give the same bytes: tests/billing/test_hashing.py holds
them to it, and to `chain.chain_head` and `merkle.root_of` (the Python Merkle root), which
define the values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from meterseal.billing import chain
from meterseal.native import optional_extension
from meterseal.transparency.merkle import root_of

_sha256 = hashlib.sha256
PURE_PYTHON_ENV = "MS_PURE_PYTHON_HASHES"


def py_chain_and_leaves(context: bytes, packets: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """`chain.chain_head` and `py_leaf_hashes` of the packets, in one pass over them."""
    sha = _sha256
    head = sha(context).digest()
    leaves: list[bytes] = []
    add = leaves.append
    for data in packets:
        add(sha(b"\x00" + data).digest())
        head = sha(head + sha(data).digest()).digest()
    return head, leaves


def py_leaf_hashes(packets: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 leaf hashes SHA-256(0x00 || packet)."""
    sha = _sha256
    return [sha(b"\x00" + data).digest() for data in packets]


NATIVE = optional_extension("meterseal.billing._hashes", PURE_PYTHON_ENV)
IMPLEMENTATION = "C (OpenSSL)" if NATIVE is not None else "Python (hashlib)"

chain_head: Callable[[bytes, Sequence[bytes]], bytes] = (
    NATIVE.chain_head if NATIVE is not None else chain.chain_head
)
chain_and_leaves: Callable[[bytes, Sequence[bytes]], tuple[bytes, list[bytes]]] = (
    NATIVE.chain_and_leaves if NATIVE is not None else py_chain_and_leaves
)
leaf_hashes: Callable[[Sequence[bytes]], list[bytes]] = (
    NATIVE.leaf_hashes if NATIVE is not None else py_leaf_hashes
)
merkle_root: Callable[[Sequence[bytes]], bytes] = (
    NATIVE.merkle_root if NATIVE is not None else root_of
)
