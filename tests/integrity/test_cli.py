"""`meterseal integrity …` end to end: keys, build, trace, embed, verify, monitor, log, reports."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from meterseal.crypto import certs
from meterseal.crypto.keys import generate_meter_key
from meterseal.crypto.suites import P256
from meterseal.deployment import CA_CERT
from meterseal.integrity.build import TRIGGER_WATTS
from meterseal.meter.provisioning import ProvisionedMeter, fleet_records, save_fleet
from meterseal.storage import Store
from tests.command_line import invoke
from tests.conftest import NOW
from tests.integrity.conftest import Lab

pytestmark = pytest.mark.usefixtures("monitor_ready")


def _ok(*args: str, code: int = 0) -> str:
    result = invoke(["integrity", *args])
    assert result.exit_code == code, result.output
    return result.output


def _deployment(root: Path) -> tuple[Path, Path, str]:
    """A CA certificate, a fleet file with meter M-7, and a store where M-7 is registered."""
    ca_key, ca_cert = certs.create_ca("integrity CA", now=NOW, rng=os.urandom)
    deployment = root / "deployment"
    deployment.mkdir()
    (deployment / CA_CERT).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key = generate_meter_key("M-7", P256)
    cert = certs.issue_meter_certificate(
        ca_key, ca_cert, "M-7", key.public_key(), now=NOW, rng=os.urandom
    )
    meters = [ProvisionedMeter(key, cert, "C-7", "R01")]
    save_fleet(root / "fleet.cbor", meters)
    url = f"sqlite:///{root / 'store.db'}"
    with Store.open(url) as store:
        store.register_meters(fleet_records(ca_cert, meters), now=NOW)
    return deployment, root / "fleet.cbor", url


def test_offline_phase_then_monitor_then_report(lab: Lab) -> None:
    root, keys, log = lab.root, str(lab.root / "keys"), str(lab.root / "audit.log")
    assert "software key (no TPM)" in _ok("keygen", "--key-dir", keys)
    binary = root / "meter"
    _ok("build", str(binary), "--variant", "shell")
    trace_file = str(root / "trace.cbor")
    argv = lab.argv(binary, count=25, persist=10, name="trusted")
    out = _ok("trace", "--out", trace_file, "--runs", "2", "--", *argv)
    assert "connect_headend" in out
    assert "${arg2}/display.reg" in out
    assert "DSig by software key (no TPM)" in _ok(
        "embed", str(binary), "--trace", trace_file, "--key-dir", keys
    )
    assert "trusted: HV" in _ok("verify", str(binary), "--key-dir", keys)

    deployment, fleet, store = _deployment(root)
    report = root / "report.cose"
    common = [
        "--key-dir",
        keys,
        "--log",
        log,
        "--meter",
        "M-7",
        "--fleet",
        str(fleet),
        "--report-out",
        str(report),
        "--store",
        store,
        "--deployment",
        str(deployment),
    ]
    _ok("monitor", *common, "--", *lab.argv(binary, name="benign"))
    assert "trusted" in _ok("status", "--store", store)
    hostile = lab.argv(binary, sensor=f"{TRIGGER_WATTS}\n", count=3, name="hostile")
    assert "malicious, killed" in _ok("monitor", *common, "--", *hostile, code=3)
    status = _ok("status", "--store", store)
    assert "malicious" in status
    assert "spawn" in status
    with Store.open(store) as db:
        assert "M-7" in db.integrity_holds()
    # The same report again is not newer than the one taken: refused.
    assert "not newer" in _ok(
        "report", str(report), "--store", store, "--deployment", str(deployment), code=2
    )
    shown = _ok("log", "--log", log, "--key-dir", keys)
    assert "malicious" in shown
    assert "signed head" in shown


def test_verify_refuses_a_changed_file(lab: Lab, meter: Path) -> None:
    keys = lab.root / "keys"
    lab.key.save(keys)
    _ok("verify", str(meter), "--key-dir", str(keys))
    data = bytearray(meter.read_bytes())
    data[0x1100] ^= 1
    meter.write_bytes(bytes(data))
    assert "untrusted" in _ok("verify", str(meter), "--key-dir", str(keys), code=1)


def test_monitor_says_when_the_program_itself_failed(lab: Lab, meter: Path) -> None:
    # Trusted all along, but the meter stopped on its own error (here: no sensor source):
    # the exit status is the program's, and a line says so beside the verdict.
    keys = lab.root / "keys"
    lab.key.save(keys)
    argv = lab.argv(meter, name="no-sensor")
    argv[1] = str(lab.root / "absent.txt")
    out = _ok("monitor", "--key-dir", str(keys), "--log", str(lab.log_path), "--", *argv, code=2)
    assert "trusted:" in out
    assert "exited with status 2" in " ".join(out.split())


def _tutorial_integrity_commands() -> list[list[str]]:
    """docs/tutorial.md's `meterseal integrity …` commands, as they are written there."""
    tutorial = (Path(__file__).parents[2] / "docs" / "tutorial.md").read_text()
    commands = []
    for line in tutorial.splitlines():
        if line.startswith("$ meterseal integrity "):
            words = shlex.split(line[2:])
            commands.append(words[1:])
    return commands


def test_tutorial_integrity_lines_run_as_written(
    monitor_ready: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keygen, build, example, trace, embed, monitor: each tutorial line works in an empty dir.

    The tutorial runs them in a deployment's directory (tests/test_tutorial.py); here they run
    where nothing is configured, as an integrity lab would.
    """
    monkeypatch.chdir(tmp_path)
    commands = _tutorial_integrity_commands()
    names = [words[1] for words in commands]
    assert names[:6] == ["keygen", "build", "example", "trace", "embed", "monitor"], names
    for words in commands[:6]:
        result = invoke(words)
        assert result.exit_code == 0, (words, result.output)
    assert (tmp_path / "trace.cbor").exists()
    assert "trusted:" in result.output
    # The example keeps an operator's own sensor file.
    (tmp_path / "sensor.txt").write_text("5\n")
    assert "kept the existing" in _ok("example")
    assert (tmp_path / "sensor.txt").read_text() == "5\n"


def test_trace_fails_when_the_traced_program_fails(lab: Lab, builds: dict[str, Path]) -> None:
    """A meter that exits 2 (no sensor file) gives exit 2, the reason, and no trace."""
    out = lab.root / "trace.cbor"
    argv = lab.argv(builds["meter"], name="broken")
    os.remove(argv[1])
    failed = _ok("trace", "--out", str(out), "--runs", "2", "--", *argv, code=2)
    assert "exited with status 2 in trusted run 1 of 2" in failed
    assert "no trace written" in failed
    assert not out.exists()
    # With --merge an existing model is left exactly as it was.
    out.write_bytes(b"earlier")
    _ok("trace", "--out", str(out), "--merge", "--", *argv, code=2)
    assert out.read_bytes() == b"earlier"
