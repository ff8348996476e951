"""bench dissemination on a tiny size: every experiment runs, tables and a real PNG come out."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.dissemination import DisseminationPlan, run_dissemination
from meterseal.bench.dissemination_report import (
    aggregation_table,
    inprocess_table,
    latency_table,
    plot_dissemination,
    rate_table,
)
from tests.dissemination.test_nats import NATS_URL, nats_up  # noqa: F401 - fixture

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.services
@pytest.mark.usefixtures("nats_up")
def test_the_bench_runs_every_experiment_on_a_tiny_size(tmp_path: Path) -> None:
    plan = DisseminationPlan(
        NATS_URL, rates=(500, 1_000), seconds=0.5, burst=3_000, isolated=3, gap=0.01,
        meters=40, subscriptions=200, sizes=(10, 20), runs=1, paillier_bits=512,
    )  # fmt: skip
    bench = run_dissemination(Console(file=io.StringIO()), plan)
    assert bench.isolated is not None
    assert bench.burst is not None
    assert (bench.isolated.sent, bench.isolated.received) == (3, 3)
    assert (bench.burst.sent, bench.burst.received) == (3_000, 3_000)
    assert [(p.offered, p.sent, p.received) for p in bench.rates] == [
        (500, 250, 250), (1_000, 500, 500)
    ]  # fmt: skip
    assert all(p.latency["p50"] > 0 for p in (*bench.rates, bench.burst))
    assert [a.n for a in bench.aggregation] == [10, 20]
    assert all(min(a.paillier_total, a.trusted_total, a.plain) > 0 for a in bench.aggregation)
    assert [row[0] for row in rate_table(bench).rows] == ["500", "1,000"]
    assert "burst" in latency_table(bench).markdown()
    assert len(aggregation_table(bench).rows) == 2
    makers = (latency_table, rate_table, inprocess_table, aggregation_table)
    assert all(make(bench).verdict is not None for make in makers)
    burst = latency_table(bench).verdict
    assert burst is not None
    assert burst.met is not None  # a burst ran: PASS or FAIL, whichever it is
    assert bench.inproc is not None
    assert bench.inproc.publications == 3_000
    assert bench.inproc.per_second > 0
    assert len(inprocess_table(bench).rows) == 1
    path = plot_dissemination(bench, tmp_path / "bench-dissemination.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
