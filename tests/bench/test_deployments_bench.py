"""`bench deployments` runs every mode end to end on a tiny month (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.deployments import BenchPlan, run_deployments
from meterseal.bench.deployments_report import mode_table, plot_deployments, scaling_table
from tests.services_mode.conftest import nats_url  # noqa: F401 - fixture

pytestmark = pytest.mark.services


def test_every_mode_acquires_and_bills_a_small_month(nats_url: str, tmp_path: Path) -> None:  # noqa: F811
    plan = BenchPlan(
        ("monolith", "services", "trusted"), 96, "sqlite", (1,), 4, 8, nats_url, tmp_path
    )
    bench = run_deployments(Console(file=open(tmp_path / "out.txt", "w")), plan)  # noqa: SIM115
    assert [m.mode for m in bench.modes] == ["monolith", "services", "trusted"]
    for result in bench.modes:
        assert result.packets == 96
        assert result.acquisition_mean > 0  # the storing process's histogram saw every packet
        assert result.bill_seconds > 0
    assert [s.workers for s in bench.scaling] == [1]
    assert all(s.packets == 32 and s.rate > 0 for s in bench.scaling)
    assert bench.trusted_ratio is not None
    assert "trusted/services per packet" in mode_table(bench).markdown()
    assert mode_table(bench).verdict is not None
    assert scaling_table(bench).verdict is not None
    assert scaling_table(bench).rows[0][1] == "32"
    assert plot_deployments(bench, tmp_path / "plot.png").stat().st_size > 10_000
