"""`meterseal bench jobs` runs end to end (small, on threads) and prints its two tables."""

from __future__ import annotations

from pathlib import Path

from tests.billing.on_disk import run


def test_bench_jobs_prints_its_tables_and_plot(tmp_path: Path) -> None:
    out = run(
        "bench", "jobs", "--customers", "6", "--chunk", "2", "--interval", "0.2", "--threads",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert "bills audited per second" in out
    assert "Deadline experiment" in out
    for label in ("tol-0.0", "tol-0.05", "tol-0.1", "queue"):
        assert label in out
    assert "model: a 1,000,000-customer month" in out
    assert (tmp_path / "bench-jobs.png").stat().st_size > 0
