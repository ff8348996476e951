"""Every refusal of a signed command, end to end: `command send` on the head-end, `agent run
--commands` beside an emulated NBR 14522 meter, `command record`, `command log`; and a replay
after the agent restarted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meterseal.commands.model import COMMAND_TYPE, open_typed
from tests.agent.served import agent_run, emulated_and_served
from tests.command_line import invoke


@pytest.mark.slow
def test_replayed_expired_foreign_and_unsigned_commands_are_refused_and_reported(
    site: tuple[Path, str], tmp_path: Path
) -> None:
    deployment, url = site
    d = ["-d", str(deployment)]
    outbox = deployment / "outbox"
    assert invoke(["command", "keygen", *d]).exit_code == 0
    assert invoke(["command", "send", "MTR-000001", "disconnect", *d]).exit_code == 0
    disconnect = (outbox / "MTR-000001-1.cose").read_bytes()
    late = invoke(["command", "send", "MTR-000001", "connect", "--ttl", "1", *d])
    assert late.output.startswith("MTR-000001#2 connect issued"), late.output
    # Another agent's meter's command, misfiled under this agent's meter.
    assert invoke(["command", "send", "MTR-000009", "disconnect", *d]).exit_code == 0
    (outbox / "MTR-000009-1.cose").rename(outbox / "MTR-000001-7.cose")
    # The command without its operator signature around it.
    (outbox / "MTR-000001-8.cose").write_bytes(open_typed(disconnect, COMMAND_TYPE).body.payload)
    expires = time.time() + 2  # the connect's expiry (issue time + 1 s, whole seconds) passed
    while time.time() < expires:
        time.sleep(0.1)

    meter_list = tmp_path / "meters.txt"
    emulate = ["emulate", "--meters", "1", "--write-meters", str(meter_list)]
    run = ["--timeout", "8", "--commands", str(outbox)]
    record = ["command", "record", str(outbox / "results"), *d]
    with emulated_and_served(deployment, url, emulate) as served:
        first = agent_run(deployment, meter_list, served.target, *run)
        assert first.exit_code == 0, first.output
        # The head-end logs the answers to what it issued: done, refused as expired. The
        # foreign and the unsigned command have no signed answer: the agent signs refusals
        # only for a command its operator key verified as one of its meters'.
        recorded = invoke(record)
        # A new agent process: the counters it accepted are on disk, so the copy is a replay.
        (outbox / "MTR-000001-1.cose").write_bytes(disconnect)
        second = agent_run(deployment, meter_list, served.target, *run)
        assert second.exit_code == 0, second.output
    said = " ".join(first.output.split())
    assert "command MTR-000001#1: done" in said
    assert "command in MTR-000001-2.cose: refused (expired)" in said
    assert "command in MTR-000001-7.cose: refused (foreign meter)" in said
    assert "command in MTR-000001-8.cose: refused (unsigned)" in said
    assert "command in MTR-000001-1.cose: refused (replayed)" in " ".join(second.output.split())
    assert list(outbox.glob("*.cose")) == []  # every command handled, none carried out twice
    assert recorded.exit_code == 0, recorded.output
    assert recorded.output.splitlines() == ["MTR-000001#1 done", "MTR-000001#2 refused (expired)"]
    # The replay's refusal answers a command already answered: said, not logged again.
    again = " ".join(invoke(record).output.split())
    assert "a replayed copy, refused by the agent, not logged again" in again
    assert list((outbox / "results").glob("*.cose")) == []
    listed = invoke(["command", "log", *d]).output
    assert "MTR-000001#1  disconnect done" in listed
    assert "MTR-000001#2  connect    refused (expired)" in listed
    assert "MTR-000009#1  disconnect issued" in listed  # never carried out anywhere
    checked = invoke(["command", "verify-log", str(deployment / "commands.log"), *d])
    assert checked.exit_code == 0, checked.output
