"""`bench crypto` with tiny time budgets: positive numbers, consistent ratios, a real PNG."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.crypto import (
    TARGET,
    BenchResult,
    SizeBench,
    SuiteBench,
    growth,
    markdown_report,
    run_bench,
    tables,
)
from meterseal.bench.timing import Timing, measure, measure_group
from meterseal.crypto.keys import HeadEndKeys
from meterseal.crypto.suites import SUITES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _timing(seconds: float) -> Timing:
    return Timing((seconds, seconds * 1.1, seconds * 0.9), 1)


@pytest.fixture(scope="module")
def result(headend: HeadEndKeys, tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    """One tiny run of the whole bench (the session head-end spares an RSA-4096 keygen)."""
    out = tmp_path_factory.mktemp("img")
    console = Console(file=io.StringIO(), width=160)
    return run_bench(
        console, seconds=0.02, out_dir=out, sizes=(64, 512, 1024), runs=3, headend=headend
    )


def test_timing_statistics() -> None:
    timing = Timing((3.0, 1.0, 2.0), 10)
    assert timing.median == 2.0
    assert timing.best == 1.0
    assert timing.per_second == 0.5
    assert timing.spread == pytest.approx(1.0)


def test_measure_times_each_op_in_every_run() -> None:
    batches: list[str] = []
    timings = measure_group(
        {"a": lambda: None, "b": lambda: sum(range(50))}, 0.02, runs=4, on_batch=batches.append
    )
    assert batches == ["a", "b"] * 4
    assert all(len(t.runs) == 4 and t.calls >= 1 and t.median > 0 for t in timings.values())
    assert measure(lambda: None, 0.01, runs=2).median > 0


def test_bound_and_ratio_arithmetic() -> None:
    bench = SuiteBench(
        "p256",
        250,
        _timing(1e-4),
        _timing(2e-4),
        _timing(6e-5),
        _timing(1e-4),
        _timing(2e-6),
        _timing(1.9e-4),
    )
    assert bench.bound == pytest.approx(6e-5 + 1e-4 + 2e-6)
    assert bench.ratio == pytest.approx(bench.bound / 2e-4)
    assert bench.best_ratio == pytest.approx(0.9 * (6e-5 + 1e-4 + 2e-6) / (0.9 * 2e-4))
    assert bench.batch_ratio == pytest.approx(bench.bound / 1.9e-4)
    assert bench.verdict == ("PASS" if bench.batch_ratio >= TARGET else "FAIL") == "PASS"
    slow = SuiteBench("p256", 250, *(_timing(t) for t in (1e-4, 2e-4, 6e-5, 1e-4, 2e-6, 2e-4)))
    assert slow.verdict == "FAIL"
    hpke = SuiteBench(
        "pq", 3600, _timing(1e-3), _timing(2e-4), _timing(1e-4), _timing(9e-5), None, _timing(2e-4)
    )
    assert hpke.bound == pytest.approx(1.9e-4)
    assert hpke.verdict == "no target"


def test_growth_is_the_log_log_slope() -> None:
    sizes = [SizeBench(n, {"sha256": _timing(n * 1e-9)}) for n in (1024, 4096)]
    assert growth(sizes, "sha256") == pytest.approx(1.0)
    assert SizeBench(190, {}).blocks == 1
    assert SizeBench(191, {}).blocks == 2


def test_run_measures_every_suite(result: BenchResult) -> None:
    assert [s.suite for s in result.suites] == list(SUITES)
    for s in result.suites:
        timings = [s.seal, s.open, s.verify, s.key] + ([s.aead] if s.aead else [])
        assert all(t.median > 0 and t.per_second > 0 for t in timings)
        assert s.packet_bytes > 0
        assert s.bound == pytest.approx(sum(t.median for t in timings[2:]))
        assert s.ratio == pytest.approx(s.bound / s.open.median)
        assert s.ratio > 0  # a ratio of timings: its size is for the bench, not a test
        assert (s.aead is None) == (s.suite == "pq")


def test_run_reproduces_experiment_3_1(result: BenchResult) -> None:
    assert [p.size for p in result.sizes] == [64, 512, 1024]
    for point in result.sizes:
        assert set(point.timings) == {"rsa_encrypt", "rsa_decrypt", "sha256", "sha512"}
        assert all(t.median > 0 for t in point.timings.values())


def test_run_writes_a_png_and_reports(result: BenchResult) -> None:
    assert result.plot.exists()
    assert result.plot.read_bytes().startswith(PNG_SIGNATURE)
    assert result.machine.python
    assert result.machine.cryptography
    report = markdown_report(result)
    assert all(f"| {name} |" in report for name in SUITES)
    assert "RSA-2048 decrypt" in report
    assert all(table.verdict is not None for table in tables(result))
    (bound,) = (t for t in tables(result) if t.verdict and t.verdict.met is not None)
    assert bound.verdict is not None
    assert f"{'PASS' if bound.verdict.met else 'FAIL'}: ed25519 and p256 open at ≥ 85%" in report


def test_plot_lands_in_out_dir(result: BenchResult, tmp_path: Path) -> None:
    from meterseal.bench.plot import plot_bench

    path = plot_bench(result, tmp_path / "sub" / "plot.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
