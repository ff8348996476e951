"""Paillier mode, for comparison (the paper's figure 2): add encrypted readings, never see one.

Meters encrypt each reading under the utility's Paillier public key (phe); the aggregator
multiplies ciphertexts (adds plaintexts) per region without any key; only the utility's
private key opens the total. No attestation is needed, and no per-meter value is ever in
the clear, but every operation costs big-integer arithmetic, and only sums are possible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from phe import paillier

DEFAULT_BITS = 2048


@dataclass(frozen=True)
class PaillierKeys:
    """The utility's Paillier key pair."""

    public: Any
    private: Any

    @classmethod
    def generate(cls, bits: int = DEFAULT_BITS) -> PaillierKeys:
        """A fresh key pair of `bits` modulus bits."""
        public, private = paillier.generate_paillier_keypair(n_length=bits)
        return cls(public, private)


def encrypt_reading(public: Any, wh: int) -> Any:
    """A meter's encrypted reading (an integer; phe's EncryptedNumber)."""
    return public.encrypt(int(wh))


def to_bytes(encrypted: Any) -> bytes:
    """An encrypted integer as bytes for a payload (exponent 0: integers only)."""
    if encrypted.exponent != 0:
        raise ValueError("only integer readings are aggregated")
    value: int = encrypted.ciphertext(be_secure=False)
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def from_bytes(public: Any, data: bytes) -> Any:
    """The EncryptedNumber a payload carries."""
    return paillier.EncryptedNumber(public, int.from_bytes(data, "big"), 0)


def add_encrypted(public: Any, readings: Iterable[Any]) -> Any:
    """The encrypted sum of encrypted readings (the aggregator's whole job)."""
    total = public.encrypt(0, r_value=1)  # the neutral element; no randomness needed
    for reading in readings:
        total = total + reading
    return total


def decrypt_total(private: Any, total: Any) -> int:
    """The utility opens the sum."""
    value: int = private.decrypt(total)
    return value
