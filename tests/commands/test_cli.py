"""`meterseal command keygen|send|log|verify-log` on a deployment directory."""

from __future__ import annotations

from pathlib import Path

from meterseal.commands.log import decode_entry
from meterseal.commands.logfile import CommandLogFile
from tests.command_line import invoke


def test_send_log_and_verify_log(tmp_path: Path) -> None:
    d = str(tmp_path)
    made = invoke(["command", "keygen", "-d", d])
    assert made.exit_code == 0, made.output
    assert "made" in made.output
    assert (tmp_path / "command.pub.pem").exists()
    sent = invoke(["command", "send", "M1", "disconnect", "--by", "ops-7", "-d", d])
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith("M1#1 disconnect issued (log entry 1)")
    assert (tmp_path / "outbox" / "M1-1.cose").exists()
    clock = ["command", "send", "M1", "set-clock", "--clock", "2026-12-06T10:00:00+00:00"]
    assert invoke([*clock, "-d", d]).output.startswith("M1#2 set-clock")
    wrong = invoke(["command", "send", "M1", "read", "--clock", "2026-12-06T10:00", "-d", d])
    assert wrong.exit_code != 0
    listed = invoke(["command", "log", "-d", d])
    assert "M1#1  disconnect issued by ops-7" in listed.output
    assert "2 entries" in listed.output
    log = str(tmp_path / "commands.log")
    checked = invoke(["command", "verify-log", log, "-d", d])
    assert checked.exit_code == 0, checked.output
    assert "verified" in checked.output
    newest = CommandLogFile(tmp_path / "commands.log").entries()[-1].digest.hex()

    # Truncated by one entry: the chain alone holds, the digest the customer kept does not.
    data = (tmp_path / "commands.log").read_bytes()
    first_length = int.from_bytes(data[:4], "big")
    (tmp_path / "short.log").write_bytes(data[: 4 + first_length])
    verify_short = ["command", "verify-log", str(tmp_path / "short.log"), "-d", d]
    assert invoke(verify_short).exit_code == 0
    cut = invoke([*verify_short, "--digest", newest])
    assert cut.exit_code == 1
    assert "does not reach digest" in cut.output

    # One entry's time edited in place: the check names the entry.
    entry = decode_entry(data[4 : 4 + first_length])
    edited = data.replace(entry.at_ms.to_bytes(8, "big"), (entry.at_ms + 1).to_bytes(8, "big"), 1)
    assert edited != data
    (tmp_path / "edited.log").write_bytes(edited)
    bad = invoke(["command", "verify-log", str(tmp_path / "edited.log"), "-d", d])
    assert bad.exit_code == 1
    assert "entry 1 differs from what was recorded" in bad.output
    assert "NOT VERIFIED" in bad.output


def test_send_dlms_carries_the_command_out_through_an_agent(tmp_path: Path) -> None:
    import asyncio
    import os
    import threading

    from cryptography.hazmat.primitives import serialization

    from meterseal.agent.dlms_driver import DlmsSecrets
    from meterseal.agent.dlms_emulator import DlmsMeterLine, Transport
    from meterseal.agent.dlms_keys import save_dlms_keys
    from meterseal.agent.dlms_meter import DlmsMeterApp
    from meterseal.agent.nbr_meter import EmulatedMeter
    from meterseal.crypto import certs
    from meterseal.crypto.suites import P256
    from meterseal.meter.load import Fleet
    from meterseal.meter.provisioning import provision, save_fleet
    from tests.conftest import NOW

    d = str(tmp_path)
    ca_key, ca_cert = certs.create_ca("test CA", now=NOW, rng=os.urandom)
    (meter,) = provision(ca_key, ca_cert, 1, P256, now=NOW, prefix="DLMS", workers=1)
    save_fleet(tmp_path / "fleet-p256.cbor", [meter])
    save_dlms_keys(tmp_path / "dlms-keys.cbor", {"60000001": DlmsSecrets(b"pw")}, None)
    assert invoke(["command", "keygen", "-d", d]).exit_code == 0
    emulated = EmulatedMeter("60000001", 0, Fleet(7), lambda: NOW.timestamp())
    line = DlmsMeterLine(DlmsMeterApp(emulated, b"pw"), Transport.HDLC)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    host, port = asyncio.run_coroutine_threadsafe(line.start(), loop).result(10)
    try:
        via = ["--dlms", f"{host}:{port}", "--serial", "60000001", "--hdlc", "-d", d]
        meter_id = meter.key.meter_id
        cut = invoke(["command", "send", meter_id, "disconnect", *via])
        assert cut.exit_code == 0, cut.output
        assert cut.output.strip() == f"{meter_id}#1 done"
        assert emulated.load_connected is False
        wrong = invoke(["command", "send", meter_id, "connect", *via[:-2], "--serial", "60000009",
                        "-d", d])  # fmt: skip
        assert wrong.exit_code != 0  # no secret for that serial: nothing sent to any meter
        back = invoke(["command", "send", meter_id, "connect", *via])
        assert back.output.strip() == f"{meter_id}#3 done"
        assert emulated.load_connected is True
    finally:
        asyncio.run_coroutine_threadsafe(line.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    listed = invoke(["command", "log", "-d", d])
    assert f"{meter_id}#1  disconnect done" in listed.output
    assert f"{meter_id}#2  connect    issued" in listed.output  # issued, never carried out
    assert f"{meter_id}#3  connect    done" in listed.output
    # The customer checks the log with the meter's certificate: the results are the meter's.
    pem = serialization.Encoding.PEM
    (tmp_path / "meter.pem").write_bytes(meter.certificate.public_bytes(pem))
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    mine = ["--meter", meter_id, "--meter-cert", str(tmp_path / "meter.pem")]
    mine += ["--operator-key", str(tmp_path / "command.pub.pem")]
    log = str(tmp_path / "commands.log")
    checked = invoke(["command", "verify-log", log, *mine, "--ca", str(tmp_path / "ca.pem")])
    assert checked.exit_code == 0, checked.output
    assert "0 results without their meter's certificate" in checked.output
