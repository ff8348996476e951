"""`bench trusted-overhead` on a tiny size: both workers run, the inside one attested, a PNG."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.crypto import SIZE_OPS
from meterseal.bench.trusted import run_trusted_overhead, tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_run_measures_inside_an_attested_worker(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=200)
    result = run_trusted_overhead(console, seconds=0.02, sizes=(64, 256), runs=2, out_dir=tmp_path)
    assert {(p.op, p.size) for p in result.points} == {
        (op, size) for op in SIZE_OPS for size in (64, 256)
    }
    for point in result.points:
        assert len(point.outside.runs) == len(point.inside.runs) == 2
        assert point.outside.median > 0
        assert point.inside.median > 0
    assert all(result.ratio(op) > 0 for op in SIZE_OPS)
    # The inside worker measured itself, attested and got its key from the CAS.
    assert len(bytes.fromhex(result.startup["measurement"])) == 32
    assert result.startup["assurance"] == "simulated: no hardware guarantee"
    assert result.startup["fetch_seconds"] > 0
    assert result.plot.read_bytes().startswith(PNG_SIGNATURE)
    markdown = "\n".join(t.markdown() for t in tables(result))
    assert "2.25x" in markdown
    assert "11.6x" in markdown
    assert "no hardware guarantee" in markdown
    assert "RSA-2048 decrypt inside/outside" in markdown
    assert all(t.verdict is not None for t in tables(result))


def test_a_worker_that_cannot_start_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterseal.bench import trusted_worker
    from meterseal.errors import MetersealError

    # A configuration the CAS policy does not cover: the inside worker is refused its key.
    monkeypatch.setattr(
        "meterseal.bench.trusted.trusted_worker.stage_config",
        lambda sizes: {"sizes": list(sizes), "tampered": True},
    )
    assert trusted_worker.stage_config((1,))["tampered"] is True
    with pytest.raises(MetersealError, match=r"inside worker failed.*code modified\?"):
        run_trusted_overhead(
            Console(file=io.StringIO()), seconds=0.01, sizes=(64,), runs=1, out_dir=tmp_path
        )
