"""Encrypting an existing deployment's files, and changing the passphrase, in place."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto import at_rest
from meterseal.crypto.keys import read_private_key
from meterseal.crypto.rekey import rekey, secret_files
from meterseal.crypto.suites import ED25519
from meterseal.deployment import init_deployment, load_deployment
from meterseal.errors import KeyFileError
from meterseal.meter.provisioning import load_fleet, provision, save_fleet
from meterseal.trust.vault import Vault, init_cas_files
from tests.command_line import invoke
from tests.conftest import NOW

PUBLIC = {"ca.cert.pem", "billing.pub.pem", "metrology.pub.pem", "deployment.json"}


@pytest.fixture(scope="module")
def plain_deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment written without a passphrase, with a fleet and the CAS's files."""
    directory = tmp_path_factory.mktemp("plain") / "deployment"
    deployment = init_deployment(directory, now=NOW)
    meters = provision(deployment.ca_key, deployment.ca_cert, 3, ED25519, now=NOW, workers=1)
    save_fleet(directory / "fleet-ed25519.cbor", meters)
    init_cas_files(directory)
    return directory


def _copy(source: Path, target: Path) -> Path:
    at_rest.private_directory(target)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
        (target / path.name).chmod(path.stat().st_mode & 0o777)
    return target


def _with_earlier_formats(directory: Path) -> None:
    """Add a bare-CBOR fleet and a PKCS#8-encrypted key, as earlier versions wrote them."""
    fleet = at_rest.read_secret_file(directory / "fleet-ed25519.cbor", None)
    cbor2.loads(fleet)  # the content is the bare CBOR of earlier versions
    at_rest.write_private_file(directory / "fleet-old.cbor", fleet)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"old"),
    )
    at_rest.write_private_file(directory / "old.key.pem", pem)


def test_every_secret_file_is_encrypted_and_still_loads(
    plain_deployment: Path, tmp_path: Path
) -> None:
    directory = _copy(plain_deployment, tmp_path / "deployment")
    public = {name: (directory / name).read_bytes() for name in PUBLIC}
    done = rekey([directory], None, b"new")
    assert {p.name for p in done} == {p.name for p in secret_files(directory)}
    assert {p.name for p in done} >= {"ca.key.pem", "fleet-ed25519.cbor", "cas-master.key"}
    for path in done:
        assert at_rest.is_encrypted(path.read_bytes()), path
    assert {name: (directory / name).read_bytes() for name in PUBLIC} == public
    assert load_deployment(directory, b"new").ca_cert == load_deployment(plain_deployment).ca_cert
    assert len(load_fleet(directory / "fleet-ed25519.cbor", b"new")) == 3
    Vault.from_deployment(directory, b"new")
    with pytest.raises(KeyFileError, match="MS_PASSPHRASE"):
        load_deployment(directory)
    assert rekey([directory], b"new", b"new") == []  # nothing left to encrypt


def test_the_passphrase_changes(plain_deployment: Path, tmp_path: Path) -> None:
    directory = _copy(plain_deployment, tmp_path / "deployment")
    rekey([directory], None, b"first")
    rekey([directory], b"first", b"second")
    load_deployment(directory, b"second")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_deployment(directory, b"first")


def test_files_of_earlier_versions_are_encrypted_too(
    plain_deployment: Path, tmp_path: Path
) -> None:
    directory = _copy(plain_deployment, tmp_path / "deployment")
    _with_earlier_formats(directory)
    rekey([directory], b"old", b"old")
    assert at_rest.is_encrypted((directory / "fleet-old.cbor").read_bytes())
    assert at_rest.is_encrypted((directory / "old.key.pem").read_bytes())
    assert len(load_fleet(directory / "fleet-old.cbor", b"old")) == 3
    assert isinstance(
        read_private_key(directory / "old.key.pem", b"old"), ec.EllipticCurvePrivateKey
    )


def test_keys_encrypt_command(
    plain_deployment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _copy(plain_deployment, tmp_path / "deployment")
    monkeypatch.delenv("MS_PASSPHRASE", raising=False)
    refused = invoke(["keys", "encrypt", str(directory)])
    assert refused.exit_code == 2
    assert "set MS_PASSPHRASE" in refused.stderr
    monkeypatch.setenv("MS_PASSPHRASE", "correct horse")
    result = invoke(["keys", "encrypt", str(directory)])
    assert result.exit_code == 0, result.output
    assert f"encrypted {directory / 'ca.key.pem'}" in " ".join(result.stdout.split())
    load_deployment(directory, b"correct horse")
    monkeypatch.setenv("OLD", "correct horse")
    monkeypatch.setenv("MS_PASSPHRASE", "battery staple")
    changed = invoke(["keys", "encrypt", str(directory), "--old-passphrase-env", "OLD"])
    assert changed.exit_code == 0, changed.output
    load_deployment(directory, b"battery staple")
    missing = invoke(["keys", "encrypt", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "is not a directory" in missing.stderr
