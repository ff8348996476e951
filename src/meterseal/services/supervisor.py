"""`meterseal serve --mode services|trusted`: start each service as its own process, keep it up.

The supervisor holds no key and touches no packet: it starts `meterseal service run NAME`
processes (one receiver, `workers` of each trusted stage, one billing service), relays their
`listening …` lines prefixed with the process name, restarts any that dies (JetStream
redelivers what it had not acknowledged) on the addresses it had bound, and on SIGTERM stops
them all gracefully.

A child's command line is world-readable (`ps`, /proc/PID/cmdline); its environment only to
its user and root. So the store URL and the NATS URL, which may carry a password, reach the
children in their environment (`STORE_VARIABLE`, MS_NATS_URL, the receiver's MQTT broker in
`MQTT_VARIABLE`), never on their command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from meterseal.errors import ConfigurationError
from meterseal.runtime.metrics import ServiceMetrics
from meterseal.runtime.readiness import Readiness
from meterseal.services.catalog import ServiceOptions

log = logging.getLogger(__name__)
START_TIMEOUT = 120.0  # a trusted stage measures its code and attests first
RESTART_DELAY = 0.5
# A child that exited this recently is not trusted to be up: a stage that crashes on each
# message it takes becomes ready again between crashes, and must not read as ready then.
UNSTEADY_FOR = 30.0
LISTEN_OPTIONS = {"tcp": "--tcp", "http": "--http"}  # endpoint name -> its listen option
STORE_VARIABLE = "MS_SERVICE_STORE"  # the store URL `service run` reads when --store is absent
MQTT_VARIABLE = "MS_SERVICE_MQTT"  # the receiver's MQTT broker URL, when --mqtt is absent
NATS_VARIABLE = "MS_NATS_URL"  # what services.nats_bus reads when --nats is absent


@dataclass(frozen=True)
class ProcessPlan:
    """One process to run: its label (service#index), command line and added environment."""

    label: str
    service: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # set in the child's environment (URLs with passwords)

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` (the supervisor's environment) with this plan's variables set."""
        return {**base, **dict(self.env)}

    def pinned(self, endpoints: dict[str, str]) -> ProcessPlan:
        """This plan listening on the addresses a start of it reported binding."""
        # Meters keep sending where the receiver listened: a restart must not move it, even
        # when it was told port 0 and the kernel picked one.
        argv = list(self.argv)
        for name, option in LISTEN_OPTIONS.items():
            if name in endpoints and option in argv:
                argv[argv.index(option) + 1] = endpoints[name].removeprefix("http://")
        return replace(self, argv=tuple(argv))


def service_env(options: ServiceOptions, *, receiver: bool) -> tuple[tuple[str, str], ...]:
    """The variables a service process gets: the URLs that may hold a password."""
    env = [(STORE_VARIABLE, options.store_url)]
    if options.nats_url:
        env.append((NATS_VARIABLE, options.nats_url))
    if receiver and options.receivers.mqtt:
        env.append((MQTT_VARIABLE, options.receivers.mqtt))
    return tuple(env)


def service_argv(service: str, options: ServiceOptions, *, receiver: bool) -> list[str]:
    """The `meterseal service run` command line of one process (no URL: see `service_env`)."""
    settings = options.receivers
    argv = [sys.executable, "-m", "meterseal.services", "run", service]
    argv += ["--deployment", str(options.deployment)]
    argv += ["--prefix", options.prefix, "--ack-wait", str(options.ack_wait)]
    argv += ["--passphrase-env", options.passphrase_env]  # a variable's name, not the secret
    if options.cas_url:
        argv += ["--cas", options.cas_url]
    if options.worker_tls:
        argv += ["--worker-tls"]
    if options.http_tls and receiver:
        argv += ["--http-tls", options.http_tls]
    for name, value in (("tcp", settings.tcp), ("http", settings.http)):
        argv += [f"--{name}", value if receiver and value else "off"]
    if receiver and settings.mqtt:  # the broker's URL in MQTT_VARIABLE (service_env)
        argv += ["--mqtt-prefix", settings.mqtt_prefix]
    else:
        argv += ["--mqtt", "off"]
    argv += ["--batch-size", str(options.intake.batch_size)]
    return argv


def plan_processes(options: ServiceOptions, workers: int) -> list[ProcessPlan]:
    """Receiver, `workers` open-verify and anonymize-store processes, one billing."""
    if workers < 1:
        raise ConfigurationError("services mode needs at least one worker per stage")

    def plan(label: str, service: str) -> ProcessPlan:
        receiver = service == "receiver"
        argv = service_argv(service, options, receiver=receiver)
        return ProcessPlan(label, service, tuple(argv), service_env(options, receiver=receiver))

    plans = [plan("receiver", "receiver")]
    for service in ("open-verify", "anonymize-store"):
        plans += [plan(f"{service}#{index}", service) for index in range(workers)]
    plans.append(plan("billing", "billing"))
    return plans


class _Child:
    def __init__(self, plan: ProcessPlan) -> None:
        self.plan = plan
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.endpoints: dict[str, str] = {}
        self.reader: asyncio.Task[None] | None = None
        self.started = 0.0
        self.failures = 0  # consecutive early exits: the restart delay doubles with each
        self.exits: list[tuple[float, int]] = []  # (monotonic time, code) of recent exits

    def not_ready(self, now: float) -> str | None:
        """Why this process does not count as ready (down, starting, or crash-looping)."""
        # Read only: this runs in the readiness thread while the loop appends exits.
        recent = [(at, code) for at, code in tuple(self.exits) if now - at < UNSTEADY_FOR]
        if recent:
            code = recent[-1][1]
            return (
                f"{self.plan.label} exited {len(recent)} time(s) in the last "
                f"{UNSTEADY_FOR:g} s (last exit code {code}): see its output"
            )
        if self.process is None or self.process.returncode is not None:
            return f"{self.plan.label} is not running"
        if not self.ready.is_set():
            return f"{self.plan.label} is starting (not ready yet)"
        return None


class Supervisor:
    """Runs a set of service processes; restarts the ones that die."""

    name = "supervisor"

    def __init__(
        self,
        plans: list[ProcessPlan],
        *,
        announce: Callable[[str], None] = lambda line: print(line, flush=True),
        restart: bool = True,
    ) -> None:
        self.children = {p.label: _Child(p) for p in plans}
        self.announce = announce
        self.restart = restart
        self.counts: Counter[str] = Counter()
        # Ready only while every child is up, ready and has not exited lately.
        self.readiness = Readiness(self.not_ready)
        self.metrics = ServiceMetrics(self.name)
        self.metrics.bridge(
            "meterseal_supervisor_events",
            "Process starts, exits and restarts",
            "kind",
            lambda: self.counts,
        )
        self._stopping = False

    def not_ready(self) -> str | None:
        """The first child that is down, starting or crash-looping, and why; None if all run."""
        now = time.monotonic()
        for child in list(self.children.values()):
            reason = child.not_ready(now)
            if reason is not None:
                return reason
        return None

    async def start(self) -> dict[str, str]:
        """Start every process and wait until each says it is ready."""
        for child in self.children.values():
            await self._spawn(child)
        try:
            await asyncio.gather(*(self._await_ready(c) for c in self.children.values()))
        except ConfigurationError:
            await self.stop()
            raise
        return {
            f"{label} {name}": address
            for label, child in self.children.items()
            for name, address in child.endpoints.items()
        }

    async def _await_ready(self, child: _Child) -> None:
        assert child.process is not None
        ready = asyncio.create_task(child.ready.wait())
        exited = asyncio.create_task(child.process.wait())
        done, _ = await asyncio.wait(
            {ready, exited}, timeout=START_TIMEOUT, return_when="FIRST_COMPLETED"
        )
        for task in (ready, exited):
            task.cancel()
        if ready not in done:
            why = f"exited with {child.process.returncode}" if exited in done else "timed out"
            raise ConfigurationError(f"service {child.plan.label} {why} before it was ready")

    async def _spawn(self, child: _Child) -> None:
        child.started = time.monotonic()
        child.ready.clear()
        child.process = await asyncio.create_subprocess_exec(
            *child.plan.argv,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env=child.plan.environment(os.environ),
        )
        self.counts["started"] += 1
        child.reader = asyncio.create_task(self._read(child, child.process))

    async def _read(self, child: _Child, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            words = line.split()
            if len(words) == 3 and words[0] == "listening":
                child.endpoints[words[1]] = words[2]
            elif words[:1] == ["ready"]:
                child.ready.set()
            self.announce(f"[{child.plan.label}] {line}")

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the processes until `stop`; restart any that exits."""
        while not stop.is_set():
            for child in self.children.values():
                process = child.process
                if process is not None and process.returncode is not None and not self._stopping:
                    self.counts["exited"] += 1
                    now = time.monotonic()
                    child.exits = [e for e in child.exits if now - e[0] < UNSTEADY_FOR]
                    child.exits.append((now, process.returncode))
                    self.announce(
                        f"[{child.plan.label}] exited with {process.returncode}"
                        + ("; restarting" if self.restart else "")
                    )
                    child.process = None
                    early = time.monotonic() - child.started < 5.0
                    child.failures = child.failures + 1 if early else 0
                    if self.restart:
                        await asyncio.sleep(min(30.0, RESTART_DELAY * 2**child.failures))
                        child.plan = child.plan.pinned(child.endpoints)
                        await self._spawn(child)
                        self.counts["restarted"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every process (receiver first), SIGKILL what is left after `grace` s."""
        self._stopping = True
        ordered = sorted(self.children.values(), key=lambda c: c.plan.service != "receiver")
        for child in ordered:
            if child.process is not None and child.process.returncode is None:
                child.process.send_signal(signal.SIGTERM)
                if child.plan.service == "receiver":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(child.process.wait(), grace)
        deadline = time.monotonic() + grace
        for child in ordered:
            if child.process is None:
                continue
            try:
                await asyncio.wait_for(child.process.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                child.process.kill()
                await child.process.wait()
            if child.reader is not None:
                with contextlib.suppress(Exception):
                    await child.reader

    def pids(self) -> dict[str, int]:
        """Process id of each running service process."""
        return {
            label: c.process.pid
            for label, c in self.children.items()
            if c.process is not None and c.process.returncode is None
        }

    def counters(self) -> dict[str, Any]:
        """Starts, exits, restarts and the live processes."""
        return {"supervisor": dict(self.counts), "processes": self.pids()}
