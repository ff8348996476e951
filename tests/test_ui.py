"""The shared table printer: Rich on a terminal, Markdown when piped, a verdict line on both."""

from __future__ import annotations

import io

from rich.console import Console

from meterseal.ui import TextTable, Verdict, print_table

WIDE = TextTable(
    "A table wider than 80 columns",
    ("suite", "store", "transport", "packets", "open-only/s", "end to end/s", "e2e/bound"),
    [("ed25519-and-more", "postgresql-scratch", "inproc", "123,456", "13,575", "9,299", "68%")],
    ("a note",),
    Verdict("end to end ≥ 85% of the bound", False),
)


def test_piped_output_is_markdown_with_whole_cells() -> None:
    out = io.StringIO()
    print_table(Console(file=out, width=80), WIDE)
    text = out.getvalue()
    assert "| ed25519-and-more | postgresql-scratch | inproc | 123,456 |" in text
    assert "…" not in text
    assert text.count("A table wider than 80 columns") == 1
    assert "- a note\n- FAIL: end to end ≥ 85% of the bound" in text


def test_a_terminal_gets_the_rich_table_folded_not_cut() -> None:
    out = io.StringIO()
    print_table(Console(file=out, width=80, force_terminal=True, color_system=None), WIDE)
    text = out.getvalue()
    assert "┃" in text
    assert "| --- |" not in text
    assert "…" not in text
    assert "FAIL: end to end ≥ 85% of the bound" in text


def test_verdict_lines() -> None:
    assert Verdict("p50 ≤ 20 ms", True).line() == "PASS: p50 ≤ 20 ms"
    assert Verdict("p50 ≤ 20 ms", False).line() == "FAIL: p50 ≤ 20 ms"
    assert Verdict("reference figures", None).line() == "no target: reference figures"
