"""Keys at rest, as an attacker who can read the disk finds them after each command that
writes secrets: encrypted under MS_PASSPHRASE, owner-only whatever the umask, and a warning
when no passphrase is set."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from meterseal.crypto import at_rest
from meterseal.crypto.keys import read_private_key
from meterseal.errors import KeyFileError
from meterseal.integrity.platform_key import PlatformKey
from meterseal.meter.provisioning import load_fleet
from meterseal.trust.attestation import SimulatedAttester
from meterseal.trust.sealing import load_sealing_secret
from meterseal.trust.vault import Vault
from tests.command_line import invoke

PASSPHRASE = "correct horse battery staple"
# Everything else these commands write is a secret.
PUBLIC = {
    "ca.cert.pem",
    "deployment.json",
    "billing.pub.pem",
    "metrology.pub.pem",
    "platform-attestation.pub.pem",
    "platform.pub.pem",
    "authority.pub",
}


@dataclass(frozen=True)
class Written:
    """The directories the secret-writing commands filled."""

    deployment: Path
    integrity: Path
    router: Path

    def directories(self) -> list[Path]:
        """Each directory holding secrets (the broker's own files are Mosquitto's to read)."""
        tls, mqtt = self.deployment / "tls", self.deployment / "mqtt"
        return [self.deployment, tls, mqtt, self.integrity, self.router]

    def secret_files(self) -> list[Path]:
        """Every file not known to be public."""
        return [
            p
            for d in self.directories()
            for p in d.iterdir()
            if p.is_file() and p.name not in PUBLIC and not p.name.endswith(".cert.pem")
        ]


def _run(*args: str) -> None:
    result = invoke(list(args))
    assert result.exit_code == 0, result.output


def _write_everything(root: Path) -> Written:
    written = Written(root / "deployment", root / "integrity", root / "router")
    deployment = str(written.deployment)
    _run("keys", "init", deployment)
    _run("meters", "provision", "3", "-d", deployment, "--suite", "ed25519")
    _run("meters", "provision", "3", "-d", deployment, "--suite", "p256")
    _run("cas", "init", "-d", deployment)
    _run("integrity", "keygen", "--key-dir", str(written.integrity))
    _run("router", "init", str(written.router))
    _run("certs", "issue", "receiver", "--host", "127.0.0.1", "-d", deployment)
    store = f"sqlite:///{root / 'store.db'}"
    fleet = str(written.deployment / "fleet-ed25519.cbor")
    _run("meters", "register", fleet, "-d", deployment, "--store", store)
    _run("mqtt", "setup", str(root / "broker"), "-d", deployment, "--store", store)
    return written


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """Every secret-writing command run once with MS_PASSPHRASE set, under umask 0."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MS_PASSPHRASE", PASSPHRASE)
        old = os.umask(0)
        try:
            written = _write_everything(tmp_path_factory.mktemp("encrypted"))
        finally:
            os.umask(old)
    return written


def _private_bytes(key: object) -> list[bytes]:
    """The raw secret numbers of a private key, as they would sit in an unencrypted file."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
        return [value.to_bytes((value.bit_length() + 7) // 8, "big")]
    if isinstance(key, rsa.RSAPrivateKey):
        d = key.private_numbers().d
        return [d.to_bytes((d.bit_length() + 7) // 8, "big")]
    if isinstance(key, ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey):
        return [key.private_bytes_raw()]
    pkcs8 = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return [pkcs8]


def test_every_secret_file_is_encrypted(encrypted: Written) -> None:
    files = encrypted.secret_files()
    names = {p.name for p in files}
    assert {"fleet-ed25519.cbor", "platform-attestation.key.pem", "platform-sealing.key"} <= names
    assert {"cas-master.key", "platform.key.pem", "authority.key.pem", "operator.key"} <= names
    assert {"receiver.key.pem", "headend-1.key.pem"} <= names  # TLS and MQTT client keys
    for path in files:
        data = path.read_bytes()
        assert at_rest.is_encrypted(data), path
        assert b"PRIVATE KEY" not in data, path


def test_no_private_key_appears_in_any_file(encrypted: Written) -> None:
    secret = PASSPHRASE.encode()
    keys: list[object] = [
        m.key.private_key
        for suite in ("ed25519", "p256")
        for m in load_fleet(encrypted.deployment / f"fleet-{suite}.cbor", secret)
    ]
    keys += [read_private_key(p, secret) for p in encrypted.secret_files() if p.suffix == ".pem"]
    assert len(keys) >= 6 + 11
    contents = b"".join(p.read_bytes() for p in encrypted.secret_files())
    for key in keys:
        for number in _private_bytes(key):
            assert number not in contents


def _loaders(written: Written) -> list[tuple[Path, Callable[[], object]]]:
    d = written.deployment
    return [
        (d / "fleet-ed25519.cbor", lambda: load_fleet(d / "fleet-ed25519.cbor")),
        (d / "platform-attestation.key.pem", lambda: SimulatedAttester.from_deployment(d)),
        (d / "platform-sealing.key", lambda: load_sealing_secret(d)),
        (d / "cas-master.key", lambda: Vault.from_deployment(d)),
        (d / "ca.key.pem", lambda: read_private_key(d / "ca.key.pem")),
        (written.integrity / "platform.key.pem", lambda: PlatformKey.load(written.integrity)),
        (d / "tls" / "receiver.key.pem", lambda: read_private_key(d / "tls" / "receiver.key.pem")),
        (d / "mqtt" / "headend-1.key.pem", lambda: read_private_key(
            d / "mqtt" / "headend-1.key.pem")),
        (written.router / "operator.key", lambda: at_rest.read_secret_file(
            written.router / "operator.key", None)),
    ]  # fmt: skip


def test_loading_without_the_passphrase_names_file_and_variable(encrypted: Written) -> None:
    for path, load in _loaders(encrypted):
        with pytest.raises(KeyFileError) as refused:
            load()
        assert str(path) in refused.value.diagnostics()
        assert "MS_PASSPHRASE" in refused.value.diagnostics()


def test_a_command_without_the_passphrase_ends_in_one_line(encrypted: Written) -> None:
    deployment = str(encrypted.deployment)
    result = invoke(["meters", "provision", "2", "-d", deployment])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    assert "MS_PASSPHRASE" in result.stderr
    assert "is encrypted" in result.stderr


def test_files_are_0600_and_directories_0700_under_any_umask(encrypted: Written) -> None:
    for directory in encrypted.directories():
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    for path in encrypted.secret_files():
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_without_a_passphrase_one_warning_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MS_PASSPHRASE", raising=False)
    monkeypatch.setattr(at_rest, "_warned", False)
    first = invoke(["keys", "init", str(tmp_path / "deployment")])
    assert first.exit_code == 0, first.output
    warnings = [line for line in first.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "not encrypted" in warnings[0]
    assert "MS_PASSPHRASE" in warnings[0]
    # Once per process, however many unencrypted files it writes or reads afterwards.
    again = invoke(["cas", "init", "-d", str(tmp_path / "deployment")])
    assert "warning:" not in again.stderr


def test_the_warning_is_one_stderr_line_of_the_installed_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MS_PASSPHRASE"}
    done = subprocess.run(
        [sys.executable, "-m", "meterseal", "router", "init", str(tmp_path / "router")],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stderr.count("MS_PASSPHRASE") == 1, done.stderr
    assert done.stderr.startswith("warning: key files are not encrypted")


def test_unencrypted_files_of_earlier_versions_still_load(tmp_path: Path) -> None:
    deployment = tmp_path / "deployment"
    _run("keys", "init", str(deployment))
    _run("meters", "provision", "2", "-d", str(deployment), "--suite", "ed25519")
    fleet = load_fleet(deployment / "fleet-ed25519.cbor")
    legacy = deployment / "legacy.cbor"  # a fleet file as earlier versions wrote it: bare CBOR
    data = at_rest.read_secret_file(deployment / "fleet-ed25519.cbor", None)
    legacy.write_bytes(data)
    legacy.chmod(0o600)
    assert [m.key.meter_id for m in load_fleet(legacy)] == [m.key.meter_id for m in fleet]


def test_cas_init_without_the_passphrase_refuses_an_encrypted_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = tmp_path / "deployment"
    monkeypatch.setenv("MS_PASSPHRASE", PASSPHRASE)
    _run("keys", "init", str(deployment))
    monkeypatch.delenv("MS_PASSPHRASE")
    refused = invoke(["cas", "init", "-d", str(deployment)])
    assert refused.exit_code == 2
    assert "keeps its keys encrypted: set MS_PASSPHRASE" in " ".join(refused.stderr.split())
    assert not (deployment / "cas-master.key").exists()
