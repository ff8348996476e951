"""The command line: keys init, meters provision and the demo, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import meterseal.deployment
from meterseal.errors import ConfigurationError
from tests.command_line import invoke


def _text(output: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(output.split())


def test_keys_init_then_provision(tmp_path: Path) -> None:
    deployment = tmp_path / "dep"
    result = invoke(["keys", "init", str(deployment)])
    assert result.exit_code == 0, result.output
    assert (deployment / "headend-rsa4096.key.pem").stat().st_mode & 0o777 == 0o600
    assert oct(deployment.stat().st_mode & 0o777) == "0o700"
    again = invoke(["keys", "init", str(deployment)])
    assert again.exit_code == 2
    assert "already holds a deployment" in _text(again.stderr)
    assert "already holds" not in again.stdout
    result = invoke(
        ["meters", "provision", "50", "--deployment", str(deployment), "--suite", "ed25519"]
    )
    assert result.exit_code == 0, result.output
    assert (deployment / "fleet-ed25519.cbor").exists()


def test_passphrase_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = tmp_path / "dep"
    monkeypatch.setenv("MS_PASSPHRASE", "s3cret")
    assert invoke(["keys", "init", str(deployment)]).exit_code == 0
    assert b"PRIVATE KEY" not in (deployment / "ca.key.pem").read_bytes()
    monkeypatch.delenv("MS_PASSPHRASE")
    result = invoke(["meters", "provision", "2", "--deployment", str(deployment)])
    assert result.exit_code == 2
    assert "passphrase" in _text(result.output)


def test_unknown_suite_is_a_usage_error(tmp_path: Path) -> None:
    deployment = tmp_path / "dep"
    invoke(["keys", "init", str(deployment)])
    result = invoke(
        ["meters", "provision", "2", "--deployment", str(deployment), "--suite", "rot13"]
    )
    assert result.exit_code != 0
    assert "unknown suite" in _text(result.output)


def test_demo_runs_the_journey_and_prints_both_views() -> None:
    result = invoke(["demo", "--meters", "8", "--days", "1"])
    assert result.exit_code == 0, result.output
    text = _text(result.output)
    assert "accepted: stored" in text
    assert "rejected: revoked_meter" in text
    assert "regional load" in text
    assert "connection errors 0" in text


def test_main_maps_a_meterseal_error_to_its_diagnostics_and_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ConfigurationError("key [ca] unusable: see /etc/[x]")

    monkeypatch.setattr(meterseal.deployment, "init_deployment", refuse)
    result = invoke(["keys", "init", str(tmp_path / "dep")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: key [ca] unusable: see /etc/[x]"  # not Rich markup
    assert result.stdout == ""


def test_main_leaves_any_other_error_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(meterseal.deployment, "init_deployment", crash)
    result = invoke(["keys", "init", str(tmp_path / "dep")])
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)


def test_python_dash_m_runs_main(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    done = subprocess.run(
        [sys.executable, "-m", "meterseal", "meters", "provision", "1", "-d", str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"no deployment in {missing}" in _text(done.stderr)
    assert "Traceback" not in done.stderr


def test_the_servers_of_one_deployment_listen_on_distinct_default_ports() -> None:
    # An operator starts them side by side on one machine with their defaults.
    import typer
    from typer.core import TyperGroup

    from meterseal.cli import app

    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    servers = {
        ("cas", "serve"): "--listen",
        ("kvs", "serve"): "--listen",
        ("cascadb", "serve"): "--listen",
        ("jobs", "serve"): "--listen",
        ("bills", "serve"): "--listen",
    }
    ports: dict[str, str] = {}
    for (group, name), flag in servers.items():
        sub = root.commands[group]
        assert isinstance(sub, TyperGroup)
        option = next(p for p in sub.commands[name].params if flag in p.opts)
        port = str(option.default).rsplit(":", 1)[1]
        assert port not in ports, f"{group} {name} and {ports[port]} both default to {port}"
        ports[port] = f"{group} {name}"
    assert len(ports) == len(servers)
