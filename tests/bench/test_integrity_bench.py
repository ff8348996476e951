"""`bench integrity` on a tiny workload: every mode runs, the figures are consistent, a PNG."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.integrity import (
    FLOOR,
    MODES,
    MONITOR,
    TRAP_ALL,
    plot_integrity,
    result_table,
    run_integrity,
)
from meterseal.bench.timing import Machine
from tests.integrity.conftest import _monitor_unavailable


def test_bench_integrity_runs_on_a_tiny_workload(tmp_path: Path) -> None:
    reason = _monitor_unavailable()
    if reason is not None:
        pytest.skip(reason)
    bench = run_integrity(
        Console(file=io.StringIO()),
        intervals=2000,
        persist_every=500,
        repeats=1,
        measure_seconds=0.05,
    )
    assert set(bench.modes) == set(MODES)
    assert bench.syscalls > 2 * 2000  # a display write and a send per interval, at least
    seccomp, every = bench.modes[MONITOR], bench.modes[TRAP_ALL]
    assert 0 < seccomp.trapped == every.trapped < 20  # the same few modification behaviours
    assert 0 < seccomp.rechecked < seccomp.trapped  # repeats resumed natively, after judgements
    assert bench.modes[FLOOR].trapped >= seccomp.trapped  # stopped at the same calls (and exec)
    assert bench.modes[FLOOR].rechecked == 0
    assert all(m.median > 0 for m in bench.modes.values())
    assert bench.paired_ratio(MONITOR) > 0
    assert bench.measurement_cold.median > 0
    assert bench.measurement_warm.median > 0
    table = result_table(bench, Machine.probe(None))
    assert len(table.rows) == len(MODES)
    assert "overhead" in table.headers
    assert table.verdict is not None
    assert table.verdict.met == bench.ok
    png = plot_integrity(bench, tmp_path / "bench-integrity.png")
    assert png.read_bytes().startswith(b"\x89PNG")
