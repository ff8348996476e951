"""Key files: 0600, passphrases, refusal of unsafe files, earlier formats; head-end keys reload."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto import packet
from meterseal.crypto.keys import HeadEndKeys, read_private_key, write_private_key
from meterseal.crypto.suites import SUITES
from meterseal.errors import KeyFileError
from meterseal.model import Reading
from tests.conftest import NOW, World


def test_private_key_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_private_key(path, ec.generate_private_key(ec.SECP256R1()))
    assert path.stat().st_mode & 0o777 == 0o600


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_private_key(path, ec.generate_private_key(ec.SECP256R1()))
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        read_private_key(path)


def test_passphrase_protects_the_key(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(path, key, b"correct horse")
    assert b"PRIVATE KEY" not in path.read_bytes()
    with pytest.raises(KeyFileError, match=re.escape(f"{path} is encrypted: set MS_PASSPHRASE")):
        read_private_key(path)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_private_key(path, b"wrong")
    loaded = read_private_key(path, b"correct horse")
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == key.private_numbers()


def test_headend_keys_survive_save_and_load(tmp_path: Path, world: World) -> None:
    world.headend.save(tmp_path, b"pw")
    loaded = HeadEndKeys.load(tmp_path, b"pw")
    assert loaded.public().keys.keys() == world.headend.public().keys.keys()
    for name, suite in SUITES.items():
        key = world.meters[name]
        # Sealed to the original head-end, opened by the reloaded one.
        blob = packet.seal(
            Reading(key.meter_id, 1, 2, 900, 3),
            key,
            world.headend.public(),
            suite,
            now=NOW,
            rng=os.urandom,
        )
        assert packet.open(blob, loaded, world.registry, now=NOW).reading.energy_wh == 3
        assert loaded.for_suite(suite)[0] == world.headend.for_suite(suite)[0]


def test_key_files_of_earlier_versions_still_load(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    plain, encrypted = tmp_path / "plain.pem", tmp_path / "pkcs8.pem"
    for path, encryption in (
        (plain, serialization.NoEncryption()),
        (encrypted, serialization.BestAvailableEncryption(b"pw")),
    ):
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        path.write_bytes(pem)
        path.chmod(0o600)
    for loaded in (read_private_key(plain), read_private_key(encrypted, b"pw")):
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        assert loaded.private_numbers() == key.private_numbers()
    with pytest.raises(KeyFileError, match="is encrypted: set MS_PASSPHRASE"):
        read_private_key(encrypted)


def test_unencrypted_key_file_is_plain_pem(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    write_private_key(path, ec.generate_private_key(ec.SECP256R1()))
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
