"""Secret files at rest: the encrypted form, its refusals, owner-only modes, the warning."""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.crypto import at_rest
from meterseal.errors import KeyFileError

PASSPHRASE = b"correct horse"


@pytest.fixture
def warning_renewed(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's process has not given the unencrypted-keys warning yet."""
    monkeypatch.setattr(at_rest, "_warned", False)


# scrypt takes 0.1 s or more per derivation: a handful of examples covers the format.
@settings(max_examples=8)
@given(content=st.binary(max_size=2048), passphrase=st.binary(min_size=1, max_size=64))
def test_sealed_content_round_trips(content: bytes, passphrase: bytes) -> None:
    sealed = at_rest.seal(content, passphrase)
    assert at_rest.is_encrypted(sealed)
    assert at_rest.unseal(sealed, passphrase, Path("f")) == content
    if len(content) >= 8:
        assert content not in sealed


@given(content=st.binary(max_size=2048))
def test_plain_form_round_trips(content: bytes) -> None:
    sealed = at_rest.seal(content, None)
    assert at_rest.is_sealed_form(sealed)
    assert not at_rest.is_encrypted(sealed)
    assert at_rest.unseal(sealed, None, Path("f")) == content


@settings(max_examples=8)
@given(flip=st.integers(min_value=0))
def test_any_altered_byte_is_refused(flip: int) -> None:
    sealed = bytearray(at_rest.seal(b"s" * 32, PASSPHRASE))
    at = len(at_rest.MAGIC) + 1 + flip % (len(sealed) - len(at_rest.MAGIC) - 1)
    sealed[at] ^= 0x01
    with pytest.raises(KeyFileError, match="wrong passphrase or damaged"):
        at_rest.unseal(bytes(sealed), PASSPHRASE, Path("f"))


def test_reading_without_the_passphrase_names_file_and_variable(tmp_path: Path) -> None:
    path = tmp_path / "cas-master.key"
    at_rest.write_secret_file(path, b"k" * 32, PASSPHRASE)
    with pytest.raises(KeyFileError) as refused:
        at_rest.read_secret_file(path, None)
    assert str(path) in refused.value.diagnostics()
    assert "MS_PASSPHRASE" in refused.value.diagnostics()
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        at_rest.read_secret_file(path, b"battery staple")
    assert at_rest.read_secret_file(path, PASSPHRASE) == b"k" * 32


def test_secret_files_of_earlier_versions_still_open(tmp_path: Path) -> None:
    # What write_symmetric_secret wrote before this module: hashlib's scrypt, same layout.
    salt, nonce = b"\x01" * 16, b"\x02" * 12
    key = hashlib.scrypt(PASSPHRASE, salt=salt, n=2**15, r=8, p=1, dklen=32, maxmem=2**26)
    body = AESGCM(key).encrypt(nonce, b"old secret", at_rest.MAGIC)
    path = tmp_path / "old.key"
    path.write_bytes(at_rest.MAGIC + b"\x01" + salt + nonce + body)
    path.chmod(0o600)
    assert at_rest.read_secret_file(path, PASSPHRASE) == b"old secret"


def test_files_are_0600_and_directories_0700_whatever_the_umask(
    tmp_path: Path, permissive_umask: None
) -> None:
    path = tmp_path / "new" / "dir" / "secret.key"
    at_rest.write_secret_file(path, b"k" * 32, PASSPHRASE)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    at_rest.write_secret_file(path, b"j" * 32, PASSPHRASE)  # replaced, still owner-only
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary left
    database = tmp_path / "store.db"
    assert at_rest.create_private_file(database)
    assert not at_rest.create_private_file(database)
    assert database.stat().st_mode & 0o777 == 0o600


def test_a_shared_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    at_rest.write_secret_file(path, b"k" * 32, PASSPHRASE)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="readable by others"):
        at_rest.read_secret_file(path, PASSPHRASE)


def test_unencrypted_secrets_are_warned_about_once(
    tmp_path: Path, warning_renewed: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=at_rest.__name__):
        at_rest.write_secret_file(tmp_path / "a.key", b"a", None)
        at_rest.write_secret_file(tmp_path / "b.key", b"b", None)
        assert at_rest.read_secret_file(tmp_path / "a.key", None) == b"a"
    warnings = [r.getMessage() for r in caplog.records if r.name == at_rest.__name__]
    assert len(warnings) == 1
    assert "not encrypted" in warnings[0]
    assert "MS_PASSPHRASE" in warnings[0]


def test_encrypted_secrets_are_not_warned_about(
    tmp_path: Path, warning_renewed: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=at_rest.__name__):
        at_rest.write_secret_file(tmp_path / "a.key", b"a", PASSPHRASE)
        at_rest.read_secret_file(tmp_path / "a.key", PASSPHRASE)
    assert not [r for r in caplog.records if r.name == at_rest.__name__]


def test_a_secret_made_on_first_use_has_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "auth-token.key"
    start = threading.Barrier(8)

    def first_use(n: int) -> bytes:
        start.wait()
        return at_rest.ensure_secret_file(path, lambda: bytes([n]) * 32, PASSPHRASE)

    with ThreadPoolExecutor(8) as pool:
        seen = set(pool.map(first_use, range(8)))
    assert seen == {at_rest.read_secret_file(path, PASSPHRASE)}
    assert [p.name for p in path.parent.iterdir()] == ["auth-token.key"]


def test_creating_without_replacing_keeps_the_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    assert at_rest.write_private_file(path, b"first", replace=False)
    assert not at_rest.write_private_file(path, b"second", replace=False)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]
