"""Key files: 0600, passphrases, refusal of unsafe files; head-end keys survive a save/load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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
    assert b"ENCRYPTED" in path.read_bytes()
    with pytest.raises(KeyFileError, match="passphrase"):
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


def test_symmetric_secret_round_trip_with_and_without_passphrase(tmp_path: Path) -> None:
    from meterseal.crypto.keys import read_symmetric_secret, write_symmetric_secret

    plain, sealed = tmp_path / "plain.key", tmp_path / "sealed.key"
    write_symmetric_secret(plain, b"k" * 32)
    write_symmetric_secret(sealed, b"s" * 32, b"correct horse")
    assert (plain.stat().st_mode & 0o777) == 0o600
    assert read_symmetric_secret(plain) == b"k" * 32
    assert b"s" * 32 not in sealed.read_bytes()
    assert read_symmetric_secret(sealed, b"correct horse") == b"s" * 32
    with pytest.raises(KeyFileError, match="encrypted"):
        read_symmetric_secret(sealed)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_symmetric_secret(sealed, b"battery staple")
    sealed.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        read_symmetric_secret(sealed, b"correct horse")
