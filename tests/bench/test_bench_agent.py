"""`meterseal bench agent` on a tiny fleet: one table per run, bounds and a verdict, a plot."""

from __future__ import annotations

import re
from pathlib import Path

from tests.command_line import invoke


def test_bench_agent_prints_rates_against_the_protocols_bounds(tmp_path: Path) -> None:
    result = invoke(["bench", "agent", "--meters", "2", "--rounds", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.count("| protocol | meters | readings/pass | readings/s |") == 1
    # NBR 14522's load-profile request counts back from the meter's clock (the run's own
    # now): how many blocks a day's window takes depends on the hour of the run (6 just after
    # midnight UTC, 8 late in the day), never on its speed.
    nbr = re.search(r"^\| nbr14522 \| 2 \| 192 \| [\d,]+ \| [\d.]+ \| (\d+) \|", text, re.M)
    assert nbr is not None, text
    assert 5 <= int(nbr[1]) <= 9
    assert re.search(r"^\| nbr14522-sealed \| 2 \| 192 \| .* \| n/a \| 0 \|$", text, re.M)
    # DLMS/COSEM with LLS: association, serial, clock and energy (value, scaler), the profile,
    # the clock and five instantaneous values (value, scaler each), the release: 18 exchanges.
    assert re.search(
        r"^\| dlms \| 2 \| 192 \| [\d,]+ \| [\d.]+ \| 18 \| .* \| n/a \| 0 \|$", text, re.M
    )
    # Over HDLC: SNRM, DISC and one RR per further segment of the profile's answer as well,
    # and a 9600-baud bound from the frames' octets.
    hdlc = re.search(
        r"^\| dlms-hdlc \| 2 \| 192 \| [\d,]+ \| [\d.]+ \| (\d+) \| .* \| (\d+) \| 0 \|$",
        text,
        re.M,
    )
    assert hdlc is not None, text
    assert int(hdlc[1]) > 20
    assert int(hdlc[2]) > 0
    assert re.search(r"^- (PASS|FAIL): one agent reads and seals at least as fast", text, re.M)
    assert "DLMS over HDLC" in text
    assert "warning: key files are not encrypted" not in text
    assert (tmp_path / "bench-agent.png").read_bytes()[:4] == b"\x89PNG"
