"""`meterseal agent emulate` and `meterseal agent run` end to end, with a head-end serving."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterseal.crypto.suites import P256
from meterseal.demo import register
from meterseal.deployment import init_deployment
from meterseal.meter.provisioning import provision, save_fleet
from meterseal.storage import Store
from tests.command_line import invoke

METERS = 3  # the last one times out


def _start(args: list[str], ready: str, count: int = 1) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "meterseal", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        if line.startswith(ready):
            lines.append(line.split())
            if len(lines) == count:
                return process, [" ".join(words) for words in lines]
    raise AssertionError(f"meterseal {args[0]} did not start (exit {process.wait()})")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(30)


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, str]:
    """A deployment with three p256 meters registered in a SQLite store."""
    now = dt.datetime.now(dt.UTC)
    deployment = init_deployment(tmp_path / "deployment", now=now)
    meters = provision(deployment.ca_key, deployment.ca_cert, METERS, P256, now=now, workers=1)
    save_fleet(tmp_path / "deployment" / "fleet-p256.cbor", meters, None)
    url = f"sqlite:///{tmp_path / 'meterseal.db'}"
    with Store.open(url) as store:
        register(store, deployment, meters)
    return tmp_path / "deployment", url


@pytest.mark.slow
@pytest.mark.parametrize("sealed", [False, True], ids=["nbr14522", "nbr14522-sealed"])
def test_the_agent_reads_emulated_meters_into_a_serving_head_end(
    site: tuple[Path, str], tmp_path: Path, sealed: bool
) -> None:
    deployment, url = site
    meter_list = tmp_path / "meters.txt"
    keys = tmp_path / "link-keys"
    variant = ["--sealed", str(keys)] if sealed else []
    emulator, meters = _start(
        [
            "agent",
            "emulate",
            "--meters",
            str(METERS),
            "--faults",
            "timeout",
            "--write-meters",
            str(meter_list),
            *variant,
        ],
        "meter ",
        METERS,
    )
    protocol = ["--protocol", "nbr14522-sealed", "--link-keys", str(keys)] if sealed else []
    headend, (endpoint,) = _start(
        ["serve", "-d", str(deployment), "--store", url, "--tcp", "127.0.0.1:0"], "listening tcp "
    )
    try:
        assert meters[0].startswith("meter MTR-000001 20000001 127.0.0.1:")
        assert meters[-1].endswith("fault timeout")
        result = invoke(
            [
                "agent",
                "run",
                "-d",
                str(deployment),
                "--meters-file",
                str(meter_list),
                "--target",
                endpoint.split()[2],
                "--days",
                "1",
                "--timeout",
                # The sealed link has no WAIT signal: a meter's first answer (the load model's
                # first month in a fresh process) must come within the timeout itself.
                "8" if sealed else "1",
                "--attempts",
                "1",
                *protocol,
            ]
        )
    finally:
        _stop(headend)
        _stop(emulator)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "meters read 2, readings sealed 192, accepted 192" in text
    assert "skipped: timeout 1" in text
    assert "MTR-000003 (20000003): meter 20000003" in text
    assert "bill this period with: meterseal bill --from" in text
    with Store.open(url) as store:
        assert store.counters().get("stored") == 192


def test_a_meter_list_line_must_have_three_fields(site: tuple[Path, str], tmp_path: Path) -> None:
    deployment, _ = site
    meter_list = tmp_path / "meters.txt"
    meter_list.write_text("MTR-000001 20000001\n")
    result = invoke(["agent", "run", "-d", str(deployment), "--meters-file", str(meter_list)])
    assert result.exit_code == 2
    assert "meter list line 1" in " ".join(result.output.split())


def test_emulated_meters_on_pseudo_terminals_print_their_device_paths() -> None:
    result = invoke(["agent", "emulate", "--pty", "--meters", "2", "--duration", "0.2"])
    assert result.exit_code == 0, result.output
    assert "emulated NBR 14522 meters: software, no meter hardware" in result.output
    assert "MTR-000002 (emulated): 0 commands" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("meter ")]
    assert [line.split()[1:3] for line in lines] == [
        ["MTR-000001", "20000001"],
        ["MTR-000002", "20000002"],
    ]
    assert all(line.split()[3].startswith("/dev/") for line in lines)
    refused = invoke(["agent", "emulate", "--pty", "--sealed", "keys", "--duration", "0.1"])
    assert refused.exit_code == 2
    assert "the sealed variant runs on TCP" in " ".join(refused.output.split())


def test_a_single_meter_needs_address_serial_and_id_together(site: tuple[Path, str]) -> None:
    deployment, _ = site
    result = invoke(["agent", "run", "-d", str(deployment), "--address", "/dev/ttyUSB0"])
    assert result.exit_code == 2
    assert "--address, --serial and --meter-id go together" in " ".join(result.output.split())


@pytest.mark.slow
def test_the_agent_reads_one_meter_named_on_the_command_line_through_its_serial_device(
    site: tuple[Path, str],
) -> None:
    # docs/meters.md: `agent run --address DEVICE --serial S --meter-id ID --tz ZONE`
    deployment, url = site
    zone = "America/Sao_Paulo"
    emulator, (meter,) = _start(
        ["agent", "emulate", "--pty", "--meters", "1", "--tz", zone], "meter "
    )
    headend, (endpoint,) = _start(
        ["serve", "-d", str(deployment), "--store", url, "--tcp", "127.0.0.1:0"], "listening tcp "
    )
    try:
        _, meter_id, serial, device, *_ = meter.split()
        assert device.startswith("/dev/")
        result = invoke(
            ["agent", "run", "-d", str(deployment), "--address", device, "--serial", serial,
             "--meter-id", meter_id, "--tz", zone, "--target", endpoint.split()[2],
             "--days", "1", "--timeout", "8"]
        )  # fmt: skip
    finally:
        _stop(headend)
        _stop(emulator)
    assert result.exit_code == 0, result.output
    assert "meters read 1, readings sealed 96, accepted 96" in " ".join(result.output.split())
    with Store.open(url) as store:
        assert store.counters().get("stored") == 96


@pytest.mark.slow
def test_a_run_whose_readings_the_head_end_did_not_take_fails(
    site: tuple[Path, str], tmp_path: Path
) -> None:
    deployment, _ = site
    elsewhere = f"sqlite:///{tmp_path / 'no-meters.db'}"  # a head-end that knows no meter
    Store.open(elsewhere).close()
    emulator, (meter,) = _start(["agent", "emulate", "--meters", "1"], "meter ")
    headend, (endpoint,) = _start(
        ["serve", "-d", str(deployment), "--store", elsewhere, "--tcp", "127.0.0.1:0"],
        "listening tcp ",
    )
    try:
        _, meter_id, serial, address, *_ = meter.split()
        result = invoke(
            ["agent", "run", "-d", str(deployment), "--address", address, "--serial", serial,
             "--meter-id", meter_id, "--target", endpoint.split()[2], "--days", "1",
             "--timeout", "8"]
        )  # fmt: skip
    finally:
        _stop(headend)
        _stop(emulator)
    text = " ".join(result.output.split())
    assert "readings sealed 96, accepted 0, rejected 96" in text
    assert result.exit_code == 1, result.output
    assert "96 sealed readings were not stored by the head-end" in text
