"""`meterseal agent emulate-dlms` and `agent run --protocol dlms|dlms-hdlc` into a head-end."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterseal.storage import Store
from tests.agent.served import METERS, TWO_READ, agent_run, emulated_and_served
from tests.command_line import invoke


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
    emulate = ["emulate-dlms", "--meters", str(METERS), "--faults", "foreign",
               "--write-meters", str(meter_list), "--write-keys", str(keys), *line]  # fmt: skip
    with emulated_and_served(deployment, url, emulate, METERS) as served:
        assert served.meters[0].startswith("meter MTR-000001 30000001 127.0.0.1:")
        assert served.meters[-1].endswith("fault foreign")
        result = agent_run(
            deployment, meter_list, served.target, "--timeout", "8",
            "--protocol", protocol.replace("-hls", ""), "--dlms-keys", str(keys),
            "--commands", str(deployment / "outbox"),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert TWO_READ in text
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
