"""The emulators' shared command-line part: say what they are, list the meters, serve."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from meterseal.agent.targets import MeterLineEntry
from meterseal.cli_common import console


def emulated_header(protocol: str, seed: int) -> str:
    """The line that names emulated meters as such before their list."""
    return f"emulated {protocol} meters: software, no meter hardware (load model seed {seed})"


async def serve_meter_list(
    header: str,
    entries: Sequence[MeterLineEntry],
    faults: Sequence[str],
    write_meters: Path | None,
    duration: float,
    stop_meters: Callable[[], Awaitable[None]],
) -> None:
    """Print `header` and the meter list (scripts wait for its lines), write it to
    `write_meters`, serve until SIGINT, SIGTERM or `duration` seconds (0: no limit), stop."""
    console.print(header)
    for entry, fault in zip(entries, faults, strict=True):
        print(f"meter {entry.line()} fault {fault}", flush=True)
    if write_meters is not None:
        write_meters.write_text("".join(f"{e.line()}\n" for e in entries))
        console.print(f"meter list written to {write_meters}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration or None)
    await stop_meters()
