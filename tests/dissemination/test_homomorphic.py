"""Paillier mode: the aggregator adds ciphertexts; only the utility's key opens the total."""

from __future__ import annotations

import pytest

from meterseal.dissemination.homomorphic import (
    PaillierKeys,
    add_encrypted,
    decrypt_total,
    encrypt_reading,
    from_bytes,
    to_bytes,
)


def test_the_encrypted_sum_opens_to_the_sum() -> None:
    keys = PaillierKeys.generate(bits=512)  # small for test speed; the bench uses 2048
    readings = [0, 1, 250, 4_000, 17]
    encrypted = [
        from_bytes(keys.public, to_bytes(encrypt_reading(keys.public, r))) for r in readings
    ]
    total = add_encrypted(keys.public, encrypted)
    assert decrypt_total(keys.private, total) == sum(readings)
    assert decrypt_total(keys.private, add_encrypted(keys.public, [])) == 0
    other = PaillierKeys.generate(bits=512)
    with pytest.raises(ValueError, match="different key"):
        decrypt_total(other.private, total)
