"""Terminal pieces shared by the commands: one progress bar style, one duration format."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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
