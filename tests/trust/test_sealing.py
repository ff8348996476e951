"""Sealing: only the same measurement on the same platform, under the same label, unseals."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.trust.errors import SealingError
from meterseal.trust.measurement import Measurement
from meterseal.trust.sealing import (
    init_sealing_secret,
    load_sealing_secret,
    seal,
    seal_to_file,
    unseal,
    unseal_file,
)

PLATFORM = b"p" * 32
WORKER = Measurement(b"\x11" * 32)
CHANGED = Measurement(b"\x12" * 32)


@given(st.binary(max_size=2048), st.text(max_size=20))
def test_seal_then_unseal_round_trips(secret: bytes, label: str) -> None:
    assert unseal(seal(secret, WORKER, PLATFORM, label=label), WORKER, PLATFORM, label=label) == (
        secret
    )


def test_a_changed_worker_cannot_unseal_and_is_told_why() -> None:
    sealed = seal(b"anonymization key", WORKER, PLATFORM, label="anonymization-key")
    with pytest.raises(SealingError, match="its code or configuration changed"):
        unseal(sealed, CHANGED, PLATFORM, label="anonymization-key")


def test_rewriting_the_header_does_not_help_a_changed_worker() -> None:
    sealed = seal(b"anonymization key", WORKER, PLATFORM)
    # The header's measurement only explains refusals; the key is derived from the real one.
    forged = sealed.replace(WORKER.digest, CHANGED.digest)
    with pytest.raises(SealingError, match="does not open"):
        unseal(forged, CHANGED, PLATFORM)


def test_another_platform_label_or_a_flipped_bit_cannot_unseal() -> None:
    sealed = seal(b"billing key", WORKER, PLATFORM, label="billing-key")
    with pytest.raises(SealingError, match="another platform"):
        unseal(sealed, WORKER, b"q" * 32, label="billing-key")
    with pytest.raises(SealingError, match="sealed as 'billing-key'"):
        unseal(sealed, WORKER, PLATFORM, label="headend-keys")
    damaged = bytearray(sealed)
    damaged[-1] ^= 1
    with pytest.raises(SealingError, match="altered"):
        unseal(bytes(damaged), WORKER, PLATFORM, label="billing-key")
    with pytest.raises(SealingError, match="not a sealed secret"):
        unseal(b"garbage", WORKER, PLATFORM)


def test_sealed_files_use_the_platform_secret_file(tmp_path: Path) -> None:
    assert init_sealing_secret(tmp_path)
    assert not init_sealing_secret(tmp_path)
    assert (tmp_path / "platform-sealing.key").stat().st_mode & 0o777 == 0o600
    secret = load_sealing_secret(tmp_path)
    path = tmp_path / "stage.sealed"
    seal_to_file(path, b"kept at rest", WORKER, secret, label="x")
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"kept at rest" not in path.read_bytes()
    assert unseal_file(path, WORKER, secret, label="x") == b"kept at rest"
    with pytest.raises(SealingError):
        unseal_file(path, CHANGED, secret, label="x")
    with pytest.raises(SealingError, match="cannot read"):
        unseal_file(tmp_path / "missing", WORKER, secret, label="x")
