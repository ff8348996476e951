"""The command line: keys init, meters provision and the demo, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from meterseal.cli import app

runner = CliRunner()


def _text(output: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(output.split())


def test_keys_init_then_provision(tmp_path: Path) -> None:
    deployment = tmp_path / "dep"
    result = runner.invoke(app, ["keys", "init", str(deployment)])
    assert result.exit_code == 0, result.output
    assert (deployment / "headend-rsa4096.key.pem").stat().st_mode & 0o777 == 0o600
    assert oct(deployment.stat().st_mode & 0o777) == "0o700"
    again = runner.invoke(app, ["keys", "init", str(deployment)])
    assert again.exit_code == 2
    assert "already holds a deployment" in _text(again.output)
    result = runner.invoke(
        app, ["meters", "provision", "50", "--deployment", str(deployment), "--suite", "ed25519"]
    )
    assert result.exit_code == 0, result.output
    assert (deployment / "fleet-ed25519.cbor").exists()


def test_passphrase_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = tmp_path / "dep"
    monkeypatch.setenv("MS_PASSPHRASE", "s3cret")
    assert runner.invoke(app, ["keys", "init", str(deployment)]).exit_code == 0
    assert b"ENCRYPTED" in (deployment / "ca.key.pem").read_bytes()
    monkeypatch.delenv("MS_PASSPHRASE")
    result = runner.invoke(app, ["meters", "provision", "2", "--deployment", str(deployment)])
    assert result.exit_code == 2
    assert "passphrase" in _text(result.output)


def test_unknown_suite_is_a_usage_error(tmp_path: Path) -> None:
    deployment = tmp_path / "dep"
    runner.invoke(app, ["keys", "init", str(deployment)])
    result = runner.invoke(
        app, ["meters", "provision", "2", "--deployment", str(deployment), "--suite", "rot13"]
    )
    assert result.exit_code != 0
    assert "unknown suite" in _text(result.output)


def test_demo_runs_the_journey_and_prints_both_views() -> None:
    result = runner.invoke(app, ["demo", "--meters", "8", "--days", "1"])
    assert result.exit_code == 0, result.output
    text = _text(result.output)
    assert "accepted: stored" in text
    assert "rejected: revoked_meter" in text
    assert "regional load" in text
    assert "connection errors 0" in text
