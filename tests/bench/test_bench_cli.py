"""`meterseal bench ...` as a user runs it: one table with a verdict, plots outside the checkout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meterseal.bench.cli import plot_dir
from meterseal.cli import app
from tests.command_line import invoke

CHECKOUT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_INGEST = ["bench", "ingest", "--suite", "p256", "--meters", "4", "--readings", "3"]
TINY_INGEST += ["--transport", "inproc", "--open-workers", "1"]


def _files(root: Path) -> dict[str, int]:
    """Every file of the checkout (not .git, caches or hidden directories) and its mtime."""
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in root.rglob("*")
        if path.is_file()
        and not any(part.startswith(".") or part == "__pycache__" for part in path.parts[-8:])
    }


@pytest.mark.parametrize("given", [True, False], ids=["--out", "default"])
def test_bench_ingest_prints_one_table_with_a_verdict_and_plots_outside_the_checkout(
    given: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "plots"
    before = _files(CHECKOUT)
    result = invoke(TINY_INGEST + (["--out", str(out)] if given else []))
    assert result.exit_code == 0, result.output
    text = result.output
    # Not a terminal: the table once, as Markdown, whole cells at any width.
    assert text.count("| suite | store | transport |") == 1
    assert "┃" not in text
    assert "…" not in text
    assert re.search(r"\| p256 \| sqlite \| inproc \| 12 \|.*\| (PASS|FAIL) \|", text)
    assert re.search(r"^- (PASS|FAIL): p256 end to end ≥ 85% of the open-only bound", text, re.M)
    plot = (out if given else tmp_path / "cache" / "meterseal" / "bench") / "bench-ingest.png"
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    assert "bench-ingest.png" in text  # where it wrote
    assert _files(CHECKOUT) == before  # nothing written into the checkout (docs/img above all)


def test_the_default_plot_directory_is_the_users_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/someone")
    assert plot_dir(None) == Path("/var/cache/someone/meterseal/bench")
    assert plot_dir(Path("here")) == Path("here")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert plot_dir(None) == Path.home() / ".cache" / "meterseal" / "bench"


def test_every_bench_command_takes_out() -> None:
    runner = CliRunner()
    listing = runner.invoke(app, ["bench", "--help"], terminal_width=200)
    commands = re.findall(r"^│ ([a-z][a-z-]*) ", listing.output, re.M)
    assert len(commands) == 13  # connections, crypto, ingest, ..., kvs, cascadb, jobs, agent
    for command in commands:
        shown = runner.invoke(app, ["bench", command, "--help"], terminal_width=200)
        assert "--out" in shown.output, command
        assert "docs/img" not in shown.output, command
