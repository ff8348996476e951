"""Terminal pieces shared by the commands: progress bars, durations and tables of results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
class TextTable:
    """A table of text cells that renders to Rich (terminal) or Markdown (docs)."""

    title: str
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    notes: tuple[str, ...] = ()

    def rich(self) -> Table:
        """The table for a Rich console (numbers right-aligned, notes as the caption)."""
        caption = "\n".join(self.notes) or None
        table = Table(
            title=self.title, title_justify="left", caption=caption, caption_justify="left"
        )
        for i, header in enumerate(self.headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        return table

    def markdown(self) -> str:
        """The table as GitHub Markdown under a bold title line."""
        align = ["---", *("---:" for _ in self.headers[1:])]
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |"]
        lines.append("| " + " | ".join(align) + " |")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.notes:
            lines.extend(["", *(f"- {note}" for note in self.notes)])
        return "\n".join(lines)
