"""bench cascadb --quick: the table has its shape and the plot is drawn (times never asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.command_line import invoke

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_quick_bench_prints_the_table_and_draws_the_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MS_POSTGRES_URL", raising=False)  # PostgreSQL: said to be unmeasured
    result = invoke(["bench", "cascadb", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "**CascaDB: microseconds per operation beside the bare KVS" in text
    for row in (
        "| insert (per reading, 96 a statement) |",
        "| point select (primary key) |",
        "| range scan: one meter's month (192 readings) |",
        "| merge join: customers",
    ):
        assert row in text
    assert "CascaDB on the KVS: merge join: primary key of reading on r.meter = c.meter" in text
    assert "PostgreSQL: not measured: no MS_POSTGRES_URL" in text
    assert "answers of every system agree" in text
    assert "range scan and inserts on the KVS within 1.5x of the bare KVS" in text
    assert (tmp_path / "bench-cascadb.png").read_bytes().startswith(PNG_SIGNATURE)
