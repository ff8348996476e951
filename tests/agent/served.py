"""What the agent's command-line tests share: processes started and stopped, emulated meters
and a head-end serving on port 0 around one `agent run`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import Result

from tests.command_line import invoke

METERS = 3  # the deployment's meters (the `site` fixture)
TWO_READ = "meters read 2, readings sealed 192, accepted 192"  # a day of two meters, all stored


def start(args: list[str], ready: str, count: int = 1) -> tuple[subprocess.Popen[str], list[str]]:
    """`meterseal ARGS` in a process of its own, once it printed `count` lines from `ready`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "meterseal", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        if line.startswith(ready):
            lines.append(line.split())
            if len(lines) == count:
                # Read on, unseen: a full pipe (a head-end's warnings, a traceback) would
                # stop the process in its next write and the test with it.
                threading.Thread(target=process.stdout.read, daemon=True).start()
                return process, [" ".join(words) for words in lines]
    raise AssertionError(f"meterseal {args[0]} did not start (exit {process.wait()})")


def stop(process: subprocess.Popen[str]) -> None:
    """End a process `start` began."""
    process.terminate()
    process.wait(30)


@dataclass(frozen=True)
class Served:
    """The emulator's meter lines and the head-end's TCP address."""

    meters: list[str]
    target: str


@contextmanager
def emulated_and_served(
    deployment: Path, url: str, emulate: list[str], meters: int = 1
) -> Iterator[Served]:
    """`meterseal agent EMULATE...` (its `meters` meter lines) and `meterseal serve` over the
    store at `url`, both stopped when the block ends."""
    emulator, lines = start(["agent", *emulate], "meter ", meters)
    try:
        headend, (endpoint,) = start(
            ["serve", "-d", str(deployment), "--store", url, "--tcp", "127.0.0.1:0"],
            "listening tcp ",
        )
        try:
            yield Served(lines, endpoint.split()[2])
        finally:
            stop(headend)
    finally:
        stop(emulator)


def agent_run(deployment: Path, meter_list: Path, target: str, *more: str) -> Result:
    """`meterseal agent run` over a day of the listed meters into the head-end at `target`."""
    return invoke(
        ["agent", "run", "-d", str(deployment), "--meters-file", str(meter_list),
         "--target", target, "--days", "1", *more]
    )  # fmt: skip
