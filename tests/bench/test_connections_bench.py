"""bench connections, small: every meter connected at once through two relays, zero errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.connections import (
    ConnectionsPlan,
    plot_connections,
    result_table,
    run_connections,
)
from meterseal.bench.timing import Machine
from meterseal.errors import ConfigurationError


def test_every_meter_connected_at_once_and_answered(tmp_path: Path) -> None:
    plan = ConnectionsPlan(300, relays=2, senders=2, readings=2, upstreams=2)
    result = run_connections(Console(file=io.StringIO()), plan)
    assert +result.errors == {}
    assert result.connected == result.relay_open == result.kernel_established == 300
    assert result.packets == result.accepted == result.stored == 600
    assert result.ok
    assert len(result.connect_timelines) == len(result.ack_timelines) == 2
    assert len(result.relay_peak_rss_mib) == 2
    table = result_table([result], Machine.probe(None))
    assert table.rows[0][:4] == ("300", "2", "2", "sqlite")
    assert table.rows[0][5] == "300 / 300 / 300"
    assert table.verdict is not None
    assert table.verdict.met is True  # zero errors
    path = plot_connections(result, tmp_path / "connections.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_plan_beyond_the_open_files_limit_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="open files per process"):
        ConnectionsPlan(65_000, relays=2, senders=4).check(20_000)
    ConnectionsPlan(65_000).check(20_000)  # the defaults fit
