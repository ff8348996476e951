"""The documented MQTT commands: `mqtt setup`, mosquitto, `serve --mqtt`, `simulate`, `mqtt acl`."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterseal.storage import Store
from tests.command_line import invoke
from tests.mosquitto import launch, require_mosquitto, stop

METERS = 3


def _ok(args: list[str]) -> str:
    result = invoke(args)
    assert result.exit_code == 0, result.output
    return result.output


def _urls(output: str) -> dict[str, str]:
    """The `headend NAME URL` and `meters N URL` lines of `mqtt setup`, by their first word."""
    return {line.split()[0]: line.split()[-1] for line in output.splitlines() if line.strip()}


def test_setup_serve_simulate_then_a_revoked_meter_leaves_the_acl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_mosquitto()
    # One configuration for every command: the deployment, the store, and the topic root
    # (meterseal/v1/north, from deployment.name) that the ACL, the head-end and meters share.
    config = tmp_path / "meterseal.toml"
    config.write_text('[deployment]\nname = "north"\ndir = "deployment"\n')
    monkeypatch.setenv("MS_CONFIG", str(config))
    deployment, broker = tmp_path / "deployment", tmp_path / "broker"
    store = f"sqlite:///{deployment / 'meterseal.db'}"
    log = tmp_path / "mosquitto.log"
    _ok(["keys", "init", str(deployment)])
    _ok(["meters", "provision", str(METERS), "--prefix", "MQ"])
    _ok(["meters", "register", str(deployment / "fleet-p256.cbor")])
    outputs: list[str] = []

    def configure(port: int, cert_port: int) -> Path:
        outputs.append(
            _ok(
                [
                    "mqtt",
                    "setup",
                    str(broker),
                    "--port",
                    str(port),
                    "--cert-port",
                    str(cert_port),
                    "--headend",
                    "he-1",
                    "--run-as",
                    getpass.getuser(),
                    "--log-file",
                    str(log),
                ]
            )
        )
        return broker / "mosquitto.conf"

    mosquitto = launch(configure, log)
    assert "topic read meterseal/v1/north/readings/+" in (broker / "acl").read_text()
    urls = _urls(outputs[-1])
    headend = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meterseal",
            "serve",
            "--tcp",
            "off",
            "--mqtt",
            urls["headend"],
            "--open-workers",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert headend.stdout is not None
        for line in headend.stdout:  # the endpoint line: subscribed
            if line.startswith("listening mqtt "):
                assert line.split()[2].startswith("mqtts://")
                break
        else:
            raise AssertionError(f"head-end did not start (exit {headend.wait()})")
        _ok(
            [
                "simulate",
                "--transport",
                "mqtt",
                "--target",
                urls["meters"],
                "--days",
                "0.25",
                "--concurrency",
                str(METERS),
            ]
        )
    finally:
        headend.terminate()
        headend.wait(30)
        stop(mosquitto)
    with Store.open(store) as db:
        assert db.counters().get("stored") == METERS * 24
    assert "headend he-1 " in outputs[-1]
    assert len((broker / "passwd").read_text().splitlines()) == METERS

    _ok(["meters", "revoke", "MQ-000001"])
    assert "2 meters may connect" in _ok(["mqtt", "acl", str(broker)])
    acl = (broker / "acl").read_text()
    assert "user MQ-000001" not in acl
    assert "user MQ-000002" in acl
    assert "user he-1" in acl
