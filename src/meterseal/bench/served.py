"""A `meterseal serve` (or `meterseal cas serve`) process driven from Python: benches and tests.

It starts the command, reads what it prints (`listening …`, `[label] listening …`, `ready …`)
on a thread, and offers the endpoints, each process's admin URL, a scrape of its /metrics
and a graceful stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Sequence
from typing import Any

from meterseal.errors import ConfigurationError
from meterseal.runtime.metrics import parse_exposition


def _get(url: str, timeout: float = 5.0) -> bytes:
    if not url.startswith("http://"):
        raise ConfigurationError(f"not an admin URL: {url!r}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
        return bytes(response.read())


class Served:
    """A serving meterseal process and what it announced."""

    def __init__(self, args: Sequence[str], *, ready: str, env: dict[str, str] | None = None):
        command = [sys.executable, "-m", "meterseal", *args]
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # The operator's meterseal.toml is not the experiment's: MS_CONFIG=none.
            env=env or {**os.environ, "MS_CONFIG": "none"},
        )
        self.lines: list[str] = []
        self.endpoints: dict[tuple[str, str], str] = {}  # (process label, endpoint) -> address
        self._ready_word = ready
        self._ready = threading.Event()  # set on the ready line, or when the output ends
        self.announced_ready = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip()
            self.lines.append(line)
            label = ""
            if line.startswith("[") and "] " in line:
                label, line = line[1:].split("] ", 1)
            words = line.split()
            if len(words) == 3 and words[0] == "listening":
                self.endpoints[(label, words[1])] = words[2]
            if not label and line.startswith(f"ready {self._ready_word}"):
                self.announced_ready = True
                self._ready.set()
        self._ready.set()  # the process ended: wake the waiter, which then sees it

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until the process announced it is ready; ConfigurationError if it ended first."""
        self._ready.wait(timeout)
        # Its output may end before its exit status is known: the ready line is the test.
        if not self.announced_ready or self.process.poll() is not None:
            tail = "\n".join(self.lines[-20:])
            raise ConfigurationError(f"{self._ready_word} did not start:\n{tail}")

    def endpoint(self, name: str, label: str = "") -> str:
        """The address a process (its own: label '') announced for endpoint `name`."""
        for (who, endpoint), address in self.endpoints.items():
            if endpoint == name and (who == label or (not label and who == "receiver")):
                return address
        raise ConfigurationError(f"no {name} endpoint announced by {label or 'the process'}")

    def admins(self, service: str) -> list[str]:
        """Admin URLs of every process of `service` (e.g. anonymize-store#0, #1 …)."""
        return [
            address
            for (who, endpoint), address in self.endpoints.items()
            if endpoint == "admin" and who.partition("#")[0] == service
        ]

    def scrape(self, admin_url: str) -> dict[str, Any]:
        """The samples of one process's /metrics."""
        return parse_exposition(_get(f"{admin_url}/metrics").decode())

    def counters(self, admin_url: str | None = None) -> dict[str, Any]:
        """/v1/counters of one process (default: the top process)."""
        url = admin_url or self.endpoints[("", "admin")]
        return dict(json.loads(_get(f"{url}/v1/counters")))

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait; SIGKILL if it does not end in `timeout` s. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()
