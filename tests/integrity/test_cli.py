"""`meterseal integrity …` end to end: keys, build, trace, embed, verify, monitor, log, reports."""

from __future__ import annotations

import os
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
