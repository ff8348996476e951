"""`meterseal agent emulate-dlms` and `agent run --protocol dlms|dlms-hdlc` into a head-end."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterseal.storage import Store
from tests.agent.test_agent_cli import METERS, _start, _stop, site
from tests.command_line import invoke

__all__ = ["site"]  # the deployment fixture, shared with the NBR 14522 agent's test


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["dlms", "dlms-hdlc", "dlms-hls"])
def test_the_agent_reads_emulated_dlms_meters_into_a_serving_head_end(
    site: tuple[Path, str], tmp_path: Path, protocol: str
) -> None:
    deployment, url = site
    meter_list, keys = tmp_path / "meters.txt", tmp_path / "dlms-keys.cbor"
    d = ["-d", str(deployment)]
    # The head-end sends a disconnection; the agent carries it out before its pass.
    assert invoke(["command", "keygen", *d]).exit_code == 0
    sent = invoke(["command", "send", "MTR-000001", "disconnect", *d])
    assert sent.output.startswith("MTR-000001#1 disconnect issued"), sent.output
    line = {"dlms-hdlc": ["--hdlc"], "dlms-hls": ["--hls"]}.get(protocol, [])
    emulator, meters = _start(
        ["agent", "emulate-dlms", "--meters", str(METERS), "--faults", "foreign",
         "--write-meters", str(meter_list), "--write-keys", str(keys), *line],
        "meter ",
        METERS,
    )  # fmt: skip
    headend, (endpoint,) = _start(
        ["serve", "-d", str(deployment), "--store", url, "--tcp", "127.0.0.1:0"], "listening tcp "
    )
    try:
        assert meters[0].startswith("meter MTR-000001 30000001 127.0.0.1:")
        assert meters[-1].endswith("fault foreign")
        result = invoke(
            ["agent", "run", "-d", str(deployment), "--meters-file", str(meter_list),
             "--target", endpoint.split()[2], "--days", "1", "--timeout", "8",
             "--protocol", protocol.replace("-hls", ""), "--dlms-keys", str(keys),
             "--commands", str(deployment / "outbox")]
        )  # fmt: skip
    finally:
        _stop(headend)
        _stop(emulator)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "meters read 2, readings sealed 192, accepted 192" in text
    assert "skipped: wrong_serial 1" in text
    assert "command MTR-000001#1: done" in text
    recorded = invoke(["command", "record", str(deployment / "outbox" / "results"), *d])
    assert recorded.output.strip() == "MTR-000001#1 done", recorded.output
    assert "MTR-000001#1  disconnect done" in invoke(["command", "log", *d]).output
    with Store.open(url) as store:
        assert store.counters().get("stored") == 192


def test_emulated_dlms_meters_are_named_as_emulated() -> None:
    result = invoke(["agent", "emulate-dlms", "--meters", "1", "--duration", "0.1"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "emulated DLMS/COSEM meters: software, no meter hardware (load model seed 7)" in text
    assert "meter MTR-000001 30000001 127.0.0.1:" in text
