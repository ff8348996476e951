"""Run a Markdown page's console sessions command by command and check what they print.

The page format (docs/tutorial.md is written in it):

- Only ```console blocks run. In them a line starting with ``$ `` is a command, lines
  starting with ``> `` continue it (a backslash continuation or a here-document), and the
  lines up to the next command are a sample of its output (stdout and stderr together).
- Every sample line must appear in the output, in the order shown; lines not shown are
  allowed. Inside a line, ``...`` stands for any text and ``<word>`` for one value that varies
  (an id, a time, a duration): a run of non-blank characters. ``<NAME>`` in capitals does the
  same and keeps the value in the shell variable NAME for the commands that follow. Runs of
  blanks match any run of blanks, so table columns may be as wide as they come.
- Every command runs in bash in the same directory and sees the variables earlier commands
  set (``BILL=$(…)``, ``export X=…``), and must exit 0: a page shows an expected refusal
  with ``|| echo …``.
- A command ending in `` &`` runs in the background (a server): the harness waits until its
  sample lines have appeared, so such a command must show at least one (its "listening" or
  "ready" line). ``$ kill %N`` (optionally ``-INT``/``-TERM``) stops the Nth background job,
  as bash numbers them, and its sample is matched against what that job printed, its
  shutdown included. Whatever still runs at the end of the page is stopped.
- An HTML comment before a block (invisible on the rendered page) annotates it:
  ``<!-- tutorial: needs postgresql nats mosquitto -->`` runs it only where those services
  answer (the caller decides: skip, or fail under MS_REQUIRE_SERVICES=1);
  ``<!-- tutorial: skip -->`` never runs it (what a reader does once, such as installing);
  ``<!-- tutorial: timeout 300 -->`` gives its commands more than the default seconds.
- Addresses ``127.0.0.1:PORT`` and ``localhost:PORT`` are moved to free ports of the run
  (the same PORT always to the same one; the shared services' ports stay), so a page can name
  the ports a reader would use and still run beside other runs.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT = 180.0
QUIET = 2.0  # seconds a background job's output stands still before `kill %N` stops it
SHARED_PORTS = frozenset({1883, 4222, 5432, 8222, 8883})  # Mosquitto, NATS, PostgreSQL
_ANNOTATION = re.compile(r"<!--\s*tutorial:\s*(.*?)\s*-->")
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_-]*)>")
_ADDRESS = re.compile(r"\b(127\.0\.0\.1|localhost):(\d{2,5})\b")
_KILL = re.compile(r"^kill(?:\s+-(\w+))?\s+%(\d+)$")
# Variables bash sets itself: never carried from one command to the next.
_SHELL_OWN = "env -i bash --noprofile --norc -c 'compgen -v'"


class PageError(AssertionError):
    """The page does not run as written: which command, where, and what it printed."""


@dataclass(frozen=True)
class Step:
    """One command of the page with the sample of its output."""

    command: str
    expected: tuple[str, ...]
    line: int  # 1-based line of the `$` in the page
    needs: frozenset[str] = frozenset()
    timeout: float = DEFAULT_TIMEOUT

    @property
    def background(self) -> bool:
        """Whether the command runs in the background (ends with `&`)."""
        return self.command.rstrip().endswith("&") and not self.command.rstrip().endswith("&&")


def parse_page(text: str) -> list[Step]:
    """The runnable steps of a page, in order."""
    steps: list[Step] = []
    notes: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        annotation = _ANNOTATION.search(line)
        if annotation:
            notes.append(annotation.group(1))
        fence = line.strip()
        if fence.startswith("```"):
            language = fence[3:].strip()
            end = index + 1
            while end < len(lines) and not lines[end].strip().startswith("```"):
                end += 1
            if end == len(lines):
                raise PageError(f"line {index + 1}: a code block is never closed")
            if language == "console":
                steps.extend(_block_steps(lines[index + 1 : end], index + 2, notes))
            notes = []
            index = end
        index += 1
    return steps


def _block_steps(body: list[str], first_line: int, notes: list[str]) -> list[Step]:
    needs: set[str] = set()
    timeout = DEFAULT_TIMEOUT
    for note in notes:
        words = note.split()
        if words[:1] == ["skip"]:
            return []
        if words[:1] == ["needs"]:
            needs.update(words[1:])
        elif words[:1] == ["timeout"] and len(words) == 2:
            timeout = float(words[1])
        else:
            raise PageError(f"line {first_line - 1}: unknown annotation 'tutorial: {note}'")
    steps: list[Step] = []
    command: list[str] | None = None
    expected: list[str] = []
    start = 0

    def close() -> None:
        if command is not None:
            steps.append(
                Step("\n".join(command), tuple(expected), start, frozenset(needs), timeout)
            )

    for offset, line in enumerate(body):
        if line.startswith("$ "):
            close()
            command, expected, start = [line[2:]], [], first_line + offset
        elif command is not None and line.startswith("> ") and not expected:
            command.append(line[2:])
        elif command is not None and line == ">" and not expected:
            command.append("")
        elif command is None:
            if line.strip():
                raise PageError(f"line {first_line + offset}: output before any command")
        elif line.strip():
            expected.append(line)
    close()
    return steps


def line_pattern(sample: str) -> re.Pattern[str]:
    """The regular expression a sample line stands for (see the module docstring)."""
    parts: list[str] = []
    position = 0
    text = sample.strip()
    tokens = re.compile(r"\.\.\.|<([A-Za-z][A-Za-z0-9_-]*)>|\s+")
    for found in tokens.finditer(text):
        parts.append(re.escape(text[position : found.start()]))
        token = found.group(0)
        if token == "...":
            parts.append(".*?")
        elif found.group(1):
            name = found.group(1)
            parts.append(f"(?P<{name}>\\S+)" if name.isupper() else r"\S+")
        else:
            parts.append(r"\s+")
        position = found.end()
    parts.append(re.escape(text[position:]))
    return re.compile("".join(parts))


def match_sample(sample: Iterable[str], output: str) -> tuple[dict[str, str], str | None]:
    """Find the sample's lines in order in `output`: the captures, and the first line missing."""
    lines = [line.strip() for line in re.split(r"\r\n|\r|\n", output)]
    position = 0
    captured: dict[str, str] = {}
    for wanted in sample:
        if wanted.strip() == "...":
            continue
        pattern = line_pattern(wanted)
        for at in range(position, len(lines)):
            found = pattern.fullmatch(lines[at])
            if found:
                captured.update(found.groupdict())
                position = at + 1
                break
        else:
            return captured, wanted
    return captured, None


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PortMap:
    """The page's ports and this run's free ports standing in for them."""

    ports: dict[int, int] = field(default_factory=dict)

    def apply(self, text: str) -> str:
        """`text` with every local address moved to this run's port for it."""

        def move(found: re.Match[str]) -> str:
            port = int(found.group(2))
            if port in SHARED_PORTS or port == 0:
                return found.group(0)
            if port not in self.ports:
                self.ports[port] = free_port()
            return f"{found.group(1)}:{self.ports[port]}"

        return _ADDRESS.sub(move, text)


@dataclass
class Job:
    """A background command: its process group and the file it writes to."""

    number: int
    step: Step
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """What it printed so far."""
        return self.log.read_text(errors="replace")

    def settle(self, sample: list[str], quiet: float, timeout: float) -> None:
        """Wait until its output shows `sample`, or stayed the same for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        seen, since = "", time.monotonic()
        while time.monotonic() < deadline and self.process.poll() is None:
            output = self.output()
            if match_sample(sample, output)[1] is None:
                return
            if output != seen:
                seen, since = output, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> int:
        """Signal its process group; kill it after `grace` seconds; its exit status."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
                return self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.process.wait()


@dataclass
class Outcome:
    """What a run of the page did."""

    ran: list[Step] = field(default_factory=list)
    skipped: list[tuple[Step, str]] = field(default_factory=list)
    seconds: dict[int, float] = field(default_factory=dict)  # by page line


class PageRun:
    """Run one page's steps in `workdir` with `env`; `harness` holds the run's own files."""

    def __init__(self, workdir: Path, harness: Path, env: Mapping[str, str]) -> None:
        """Start with an empty shell state in `workdir`."""
        self.workdir, self.harness, self.env = workdir, harness, dict(env)
        self.state = harness / "state.sh"
        self.state.write_text(f"cd {shlex.quote(str(workdir))}\n")
        own = subprocess.run(_SHELL_OWN, shell=True, capture_output=True, text=True, check=True)
        self.shell_own = harness / "shell-own-variables"
        self.shell_own.write_text(own.stdout + "\n".join(["_", "__ms_status"]) + "\n")
        self.ports = PortMap()
        self.jobs: dict[int, Job] = {}

    def run(
        self, steps: Iterable[Step], unavailable: Callable[[Step], str | None] = lambda _s: None
    ) -> Outcome:
        """Run every step; a step whose services are `unavailable` (a reason) is skipped."""
        outcome = Outcome()
        try:
            for step in steps:
                reason = unavailable(step)
                if reason is not None:
                    outcome.skipped.append((step, reason))
                    continue
                started = time.monotonic()
                self.step(step)
                outcome.seconds[step.line] = time.monotonic() - started
                outcome.ran.append(step)
        finally:
            for job in list(self.jobs.values()):
                job.stop()
        return outcome

    def step(self, step: Step) -> None:
        """Run one step and check its output; PageError when it fails or does not match."""
        command = self.ports.apply(step.command)
        sample = [self.ports.apply(line) for line in step.expected]
        kill = _KILL.match(command.strip())
        if kill:
            self._kill(step, sample, kill.group(1), int(kill.group(2)))
        elif step.background:
            self._background(step, command.rstrip()[:-1], sample)
        else:
            self._foreground(step, command, sample)

    def _script(self, command: str, keep_state: bool) -> str:
        epilogue = ""
        if keep_state:
            # Carry what the command set: its variables (bash's own excepted) and directory.
            own = shlex.quote(str(self.shell_own))
            new = shlex.quote(str(self.state) + ".new")
            epilogue = (
                "\n__ms_status=$?\n"
                f"__ms_vars=$(compgen -v | grep -vxF -f {own} | grep -v '^__ms_')\n"
                f'{{ if [ -n "$__ms_vars" ]; then declare -p $__ms_vars; fi;'
                f' printf "cd %q\\n" "$PWD"; }} > {new}'
                f" && mv {new} {shlex.quote(str(self.state))}\n"
                "exit $__ms_status\n"
            )
        return f"source {shlex.quote(str(self.state))}\n{command}\n{epilogue}"

    def _foreground(self, step: Step, command: str, sample: list[str]) -> None:
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", self._script(command, keep_state=True)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            raw, _ = process.communicate(timeout=step.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raw, _ = process.communicate()
            self._fail(step, f"did not finish within {step.timeout:.0f} s", raw.decode())
        output = raw.decode(errors="replace")
        if process.returncode != 0:
            self._fail(step, f"exited {process.returncode}", output)
        self._check(step, sample, output)

    def _check(self, step: Step, sample: list[str], output: str) -> None:
        captured, missing = match_sample(sample, output)
        if missing is not None:
            self._fail(step, f"printed no line matching\n    {missing}", output)
        if captured:
            with self.state.open("a") as state:
                for name, value in captured.items():
                    state.write(f"{name}={shlex.quote(value)}\n")

    def _background(self, step: Step, command: str, sample: list[str]) -> None:
        if not [line for line in sample if line.strip() != "..."]:
            raise PageError(f"line {step.line}: a background command must show a line to wait for")
        number = max(self.jobs, default=0) + 1
        log = self.harness / f"job-{number}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", self._script(command, keep_state=False)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        job = Job(number, step, process, log)
        self.jobs[number] = job
        deadline = time.monotonic() + step.timeout
        while True:
            _, missing = match_sample(sample, job.output())
            if missing is None:
                break
            if process.poll() is not None:
                del self.jobs[number]
                self._fail(step, f"exited {process.returncode} before printing\n    {missing}",
                           job.output())  # fmt: skip
            if time.monotonic() > deadline:
                self._fail(step, f"printed no line matching {missing!r} within "
                           f"{step.timeout:.0f} s", job.output())  # fmt: skip
            time.sleep(0.1)
        self._check(step, sample, job.output())

    def _kill(self, step: Step, sample: list[str], signal_name: str | None, number: int) -> None:
        job = self.jobs.pop(number, None)
        if job is None:
            raise PageError(f"line {step.line}: no background job %{number} is running")
        name = (signal_name or "TERM").upper()
        sig = (
            int(name)
            if name.isdigit()
            else signal.Signals[name if name[:3] == "SIG" else f"SIG{name}"]
        )
        job.settle(sample, QUIET, step.timeout)
        job.stop(sig)
        self._check(step, sample, job.output())

    def _fail(self, step: Step, what: str, output: str) -> None:
        tail = "\n".join(output.rstrip().splitlines()[-40:])
        shown = step.command.replace("\n", "\n  > ")
        raise PageError(f"page line {step.line}: `{shown}` {what}\n--- its output ---\n{tail}")
