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
    assert re.search(r"^\| nbr14522 \| 2 \| 192 \| [\d,]+ \| [\d.]+ \| 8 \|", text, re.M)
    assert re.search(r"^\| nbr14522-sealed \| 2 \| 192 \| .* \| n/a \|$", text, re.M)
    assert re.search(r"^- (PASS|FAIL): one agent reads and seals at least as fast", text, re.M)
    assert "warning: key files are not encrypted" not in text
    assert (tmp_path / "bench-agent.png").read_bytes()[:4] == b"\x89PNG"
