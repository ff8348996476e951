"""bench fraud on a tiny fleet: both experiments run, print their tables and draw PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.fraud import run_bench, run_scale, scale_table, verdict
from meterseal.bench.fraud_sources import default_trace
from meterseal.bench.timing import Machine

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_fraud_bench_runs_every_experiment_and_plots(tmp_path: Path) -> None:
    trace = default_trace()
    if trace is None:
        pytest.skip("the UCI household trace (shared/data) is not beside this checkout")
    out = io.StringIO()
    met = run_bench(
        Console(file=out, width=200),
        customers=300,
        days=21,
        eval_customers=400,
        share=0.1,
        with_supervised=True,
        out=tmp_path,
        trace=trace,
        source_customers=100,
    )
    text = out.getvalue()
    assert "all sources side by side" in text
    for name in (
        "uci-tuning (tuning)",
        "citylearn-tuning (tuning)",
        "uci-windows (evaluation)",
        "uci-composite (evaluation)",
        "simbench-households (evaluation)",
    ):
        assert f"| {name} | meterseal |" in text
        assert f"| {name} | LocalOutlierFactor |" in text
    assert "uci-windows: AUC" in text
    assert "recall per pattern at top-k" in text
    assert "gradual drift" in text
    assert "Fraud: ranking at fleet scale" in text
    assert "300 x 21" in text
    for method in ("SOM correlation (seed)", "meterseal (supervised)", "IsolationForest"):
        assert f"| {method} |" in text  # the Markdown table for docs/benchmarks.md
    assert "ahead of IsolationForest on AUC and MAP@N: yes" in text
    verdict_line = f"- {'PASS' if met else 'FAIL'}: ahead of IsolationForest and LocalOutlierFactor"
    assert verdict_line in text
    assert "load average (1/5/15 min) before" in text
    assert f"sources plot: {tmp_path / 'fraud-sources.png'}" in text
    for name in ("fraud-bench.png", "fraud-sources.png", "fraud-umatrix.png", "fraud-explain.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)


def test_the_scale_run_counts_every_customer_and_its_time() -> None:
    result = run_scale(Console(file=io.StringIO()), 250, 14)
    assert result.customers == 250
    assert result.days == 14
    assert result.fraud_seconds > 0
    assert result.generate_seconds > 0
    assert result.peak_rss_mib > 50
    table = scale_table(result, Machine.probe(None))
    assert table.verdict is not None
    rows = {measure: value for measure, value in table.rows}
    assert rows["readings"] == f"{250 * 14 * 96:,}"


def test_verdict_names_what_is_missed() -> None:
    from meterseal.fraud.evaluate import Comparison
    from meterseal.fraud.metrics import Evaluation

    def row(method: str, auc: float, recall: float) -> Evaluation:
        return Evaluation(method, auc, {100: auc}, {"scaled": recall, "reversed": 1.0}, 10)

    good = Comparison("x", 100, 10, (row("meterseal", 0.9, 0.95), row("IsolationForest", 0.6, 0.1),
                                       row("LocalOutlierFactor", 0.5, 0.1)))  # fmt: skip
    assert all(line.endswith("yes") for line in verdict(good))
    bad = Comparison("x", 100, 10, (row("meterseal", 0.9, 0.5), row("IsolationForest", 0.95, 0.1),
                                      row("LocalOutlierFactor", 0.5, 0.1)))  # fmt: skip
    lines = verdict(bad)
    assert lines[0].endswith("NO")
    assert "scaled 50%" in lines[2]
