"""Terminal pieces shared by the commands: progress bars, durations and tables of results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def progress_bar(console: Console) -> Progress:
    """The progress bar every long command shows, on the caller's console."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def milliseconds(seconds: float | None) -> str:
    """A duration for tables: '12.3 ms', or 'n/a' when nothing was measured."""
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


@dataclass(frozen=True)
class Verdict:
    """A table's target in words and whether the run met it (None: reference figures only)."""

    target: str
    met: bool | None

    def line(self) -> str:
        """'PASS: target', 'FAIL: target', or 'no target: why' for reference figures."""
        word = "no target" if self.met is None else pass_fail(self.met)
        return f"{word}: {self.target}"


def pass_fail(met: bool) -> str:
    """The verdict word every bench table uses."""
    return "PASS" if met else "FAIL"


@dataclass(frozen=True)
class TextTable:
    """A table of text cells that renders to Rich (terminal) or Markdown (docs, pipes)."""

    title: str
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    notes: tuple[str, ...] = ()
    verdict: Verdict | None = None

    def _footer(self) -> list[str]:
        """The notes, then the verdict line."""
        return [*self.notes, *([self.verdict.line()] if self.verdict else [])]

    def rich(self) -> Table:
        """The table for a Rich console (numbers right-aligned, notes and verdict below)."""
        caption = "\n".join(self._footer()) or None
        table = Table(
            title=self.title, title_justify="left", caption=caption, caption_justify="left"
        )
        for i, header in enumerate(self.headers):
            # fold, never ellipsize: a narrow terminal wraps a cell instead of cutting it
            table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        return table

    def markdown(self) -> str:
        """The table as GitHub Markdown under a bold title line; notes and verdict as a list."""
        align = ["---", *("---:" for _ in self.headers[1:])]
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |"]
        lines.append("| " + " | ".join(align) + " |")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if footer := self._footer():
            lines.extend(["", *(f"- {line}" for line in footer)])
        return "\n".join(lines)


def print_written(console: Console, what: str, path: Path) -> Path:
    """Say where a file was written, on one line however long the path (scripts read it)."""
    console.print(f"{what}: {path}", soft_wrap=True, markup=False, highlight=False)
    return path


def print_table(console: Console, table: TextTable) -> None:
    """Print `table` once: Rich on a terminal, else Markdown (whole cells at any width)."""
    if console.is_terminal:
        console.print(table.rich())
    else:
        console.print(table.markdown(), markup=False, highlight=False, soft_wrap=True, end="\n\n")
