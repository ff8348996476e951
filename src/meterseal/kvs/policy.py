"""Redundancy policies of the secure KVS: replication, erasure coding, hybrid (sans-IO).

A policy says how each sealed chunk of an object is kept: `Replication(n)` stores n full
copies on n distinct nodes (or once on a replica set of n copies), `ErasureCoded(k, m)` stores
k + m fragments on k + m distinct nodes of which any k rebuild the chunk, `Hybrid(k, m)` stores
one full copy for fast reads plus k + m fragments, all on k + m + 1 distinct nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meterseal.errors import KvsError

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024  # plaintext bytes per chunk
SEAL_OVERHEAD = 16  # AES-GCM tag per sealed chunk (the nonce is the chunk index: not stored)
FRAGMENT_HEADER = 80  # liberasurecode's header on every fragment
MAX_FRAGMENTS = 32  # liberasurecode's k + m limit


@dataclass(frozen=True)
class Replication:
    """`copies` full copies of every sealed chunk."""

    copies: int

    def __post_init__(self) -> None:
        if not 1 <= self.copies <= MAX_FRAGMENTS:
            raise KvsError(f"replication needs 1 to {MAX_FRAGMENTS} copies, not {self.copies}")

    def __str__(self) -> str:
        return f"rep:{self.copies}"

    @property
    def nodes_needed(self) -> int:
        """Distinct healthy nodes a write needs."""
        return self.copies

    @property
    def tolerates(self) -> int:
        """Node losses every object survives."""
        return self.copies - 1


def _check_km(kind: str, k: int, m: int) -> None:
    if k < 1 or m < 1 or k + m > MAX_FRAGMENTS:
        raise KvsError(
            f"{kind} needs k >= 1 data and m >= 1 parity fragments, k + m <= {MAX_FRAGMENTS}, "
            f"not {k}+{m}"
        )


@dataclass(frozen=True)
class ErasureCoded:
    """k data + m parity fragments of every sealed chunk; any k rebuild it."""

    k: int
    m: int

    def __post_init__(self) -> None:
        _check_km("erasure coding", self.k, self.m)

    def __str__(self) -> str:
        return f"ec:{self.k}+{self.m}"

    @property
    def nodes_needed(self) -> int:
        """Distinct healthy nodes a write needs."""
        return self.k + self.m

    @property
    def tolerates(self) -> int:
        """Node losses every object survives."""
        return self.m


@dataclass(frozen=True)
class Hybrid:
    """One full copy plus k + m fragments of every sealed chunk, all on distinct nodes."""

    k: int
    m: int

    def __post_init__(self) -> None:
        _check_km("hybrid", self.k, self.m)

    def __str__(self) -> str:
        return f"hybrid:{self.k}+{self.m}"

    @property
    def nodes_needed(self) -> int:
        """Distinct healthy nodes a write needs (the copy's node holds no fragment)."""
        return self.k + self.m + 1

    @property
    def tolerates(self) -> int:
        """Node losses every object survives: the copy's node and m fragment nodes."""
        return self.m + 1


Policy = Replication | ErasureCoded | Hybrid

_SYNTAX = re.compile(r"(?:rep:(\d+)|(ec|hybrid):(\d+)\+(\d+))")


def parse_policy(text: str) -> Policy:
    """The policy written as `rep:N`, `ec:K+M` or `hybrid:K+M` (as `str(policy)` writes it)."""
    match = _SYNTAX.fullmatch(text.strip())
    if match is None:
        raise KvsError(f"unknown policy {text!r}: write rep:N, ec:K+M or hybrid:K+M")
    copies, kind, k, m = match.groups()
    if copies is not None:
        return Replication(int(copies))
    if kind == "ec":
        return ErasureCoded(int(k), int(m))
    return Hybrid(int(k), int(m))


def chunk_sizes(size: int, chunk_size: int) -> list[int]:
    """Plaintext length of every chunk of an object of `size` bytes (an empty object has one)."""
    if size < 0 or chunk_size < 1:
        raise KvsError(f"bad object size {size} or chunk size {chunk_size}")
    full, rest = divmod(size, chunk_size)
    return [chunk_size] * full + ([rest] if rest or not full else [])


def fragment_size(sealed_len: int, k: int) -> int:
    """Bytes of one fragment of a sealed chunk of `sealed_len` bytes (isa_l_rs_vand layout)."""
    return FRAGMENT_HEADER + -(-sealed_len // k)


def chunk_raw_bytes(policy: Policy, plain_len: int) -> int:
    """Bytes stored for one chunk of `plain_len` plaintext bytes under `policy`."""
    sealed = plain_len + SEAL_OVERHEAD
    if isinstance(policy, Replication):
        return policy.copies * sealed
    fragments = (policy.k + policy.m) * fragment_size(sealed, policy.k)
    return fragments + (sealed if isinstance(policy, Hybrid) else 0)


def raw_bytes(policy: Policy, size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Exact bytes the storage nodes hold for an object of `size` bytes (tags and padding)."""
    return sum(chunk_raw_bytes(policy, n) for n in chunk_sizes(size, chunk_size))
