"""The operator command key: on disk under the at-rest rules, and as the CAS's "command-key"."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.commands.keys import (
    COMMAND_KEY,
    ensure_operator_key,
    load_operator_key,
    load_signers,
    operator_key,
)
from meterseal.errors import KeyFileError
from meterseal.services.trusted_setup import checked_secret
from meterseal.trust.material import COMMAND_KEY as SECRET
from meterseal.trust.material import MaterialError, command_key_from


def test_the_key_is_made_once_encrypted_and_its_public_half_names_it(tmp_path: Path) -> None:
    made, fresh = ensure_operator_key(tmp_path, b"passphrase")
    assert fresh
    assert (tmp_path / COMMAND_KEY).stat().st_mode & 0o777 == 0o600
    kept, fresh = ensure_operator_key(tmp_path, b"passphrase")
    assert not fresh
    assert kept.kid == made.kid
    with pytest.raises(KeyFileError):
        load_operator_key(tmp_path, None)
    assert list(load_signers([tmp_path / "command.pub.pem"])) == [made.kid]


def test_the_cas_holds_it_as_command_key(tmp_path: Path) -> None:
    made, _ = ensure_operator_key(tmp_path, None)
    der = made.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    assert checked_secret(SECRET, der, "command.key.pem") == der
    assert operator_key(command_key_from({SECRET: der})).kid == made.kid
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    with pytest.raises(MaterialError):
        checked_secret(SECRET, other, "p384.pem")
