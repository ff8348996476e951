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
    sent = invoke(["command", "send", "M1", "disconnect", "-d", d])
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith("M1#1 disconnect issued (log entry 1)")
    assert (tmp_path / "outbox" / "M1-1.cose").exists()
    clock = ["command", "send", "M1", "set-clock", "--clock", "2026-12-06T10:00:00+00:00"]
    assert invoke([*clock, "-d", d]).output.startswith("M1#2 set-clock")
    wrong = invoke(["command", "send", "M1", "read", "--clock", "2026-12-06T10:00", "-d", d])
    assert wrong.exit_code != 0
    listed = invoke(["command", "log", "-d", d])
    assert "M1#1  disconnect issued" in listed.output
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
