"""What `meterseal simulate` does, apart from parsing its options.

A fleet's readings of one period are sealed by its meters and sent to a head-end. The period
is a real one (`--from`, `--days`) so that `meterseal bill` can bill it. The simulator waits a
bounded time for the head-end to answer, and says so when it does not. A head-end's
ACCEPTED means "durably received": in one process that is after the store's commit, in
services mode once the bus holds the packet, and the store may still refuse it later (a
counter sent again by an earlier run: `replayed_counter`). So when it can read the store, the
simulator also reports what the store kept, and names what the store refused after the ack.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
from cryptography import x509
from rich.console import Console

from meterseal.acquisition.freshness import FreshnessPolicy
from meterseal.acquisition.links import MeterLink
from meterseal.acquisition.mqtt_endpoint import TOPIC_PREFIX
from meterseal.acquisition.tcp import TcpLink
from meterseal.deployment import Deployment
from meterseal.errors import ConfigurationError, MetersealError
from meterseal.meter.faults import FaultPlan
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import ProvisionedMeter
from meterseal.meter.simulator import SimulationReport, run_fleet
from meterseal.meter.workload import Wire, Workload, seal_workload
from meterseal.runtime.address import parse_address
from meterseal.ui import milliseconds as _ms
from meterseal.ui import progress_bar

TRANSPORTS = ("tcp", "http", "mqtt")
DAY = 86_400


class HeadEndUnreachable(MetersealError):
    """No head-end answered at the simulator's target within the wait."""


@dataclass(frozen=True)
class SimulationPlan:
    """What `meterseal simulate` sends, where and how fast."""

    transport: str
    target: str
    start: int  # Unix seconds of the first reading, on a 15-minute boundary
    intervals: int  # readings per meter
    faults: float = 0.0
    concurrency: int = 1000
    window: int = 32
    pace: float = 0.0
    seed: int = 1
    wait: float = 10.0  # seconds without an answer (head-end or store) before giving up
    store: str | None = None  # the head-end's store, to report what it kept
    mqtt_prefix: str = TOPIC_PREFIX  # topics of the MQTT transport

    @property
    def end(self) -> int:
        """Unix seconds just after the last reading's interval."""
        return self.start + self.intervals * INTERVAL


def simulation_period(
    first_day: dt.date | None,
    days: float,
    now: dt.datetime,
    policy: FreshnessPolicy | None = None,
) -> tuple[int, int]:
    """The first reading's Unix time and the readings per meter of `days` days from `first_day`.

    Without `first_day`, the period is the `days` days that end at today's midnight (UTC), the
    same days `meterseal bill --days` bills by default. A period that ends after `now`, or that
    starts before what a head-end accepts (its freshness policy's maximum age), is refused.
    """
    policy = policy or FreshnessPolicy()
    intervals = round(days * DAY / INTERVAL)
    if intervals < 1:
        raise ConfigurationError(f"--days {days:g} is less than one 15-minute reading")
    if first_day is None:
        midnight = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        start = int(midnight.timestamp()) - intervals * INTERVAL
    else:
        start = int(dt.datetime.combine(first_day, dt.time(), dt.UTC).timestamp())
    end = start + intervals * INTERVAL
    if end > now.timestamp():
        raise ConfigurationError(
            f"the period {_day(start)} + {days:g} days ends {_when(end)}, after now: meters send "
            "readings of the past only (choose an earlier --from or fewer --days)"
        )
    oldest = now.timestamp() - policy.max_age_seconds
    if start + INTERVAL < oldest:
        first_ok = dt.datetime.fromtimestamp(oldest + DAY, dt.UTC).date()
        raise ConfigurationError(
            f"readings from {_day(start)} are older than a head-end accepts "
            f"({policy.max_age_seconds // DAY} days): choose --from {first_ok} or later"
        )
    return start, intervals


def _day(seconds: float) -> str:
    return f"{dt.datetime.fromtimestamp(seconds, dt.UTC):%Y-%m-%d}"


def _when(seconds: float) -> str:
    return f"{dt.datetime.fromtimestamp(seconds, dt.UTC):%Y-%m-%d %H:%M} UTC"


def link_for(
    transport: str,
    target: str,
    *,
    mqtt_passwords: Callable[[str], str] | None = None,
    ca: x509.Certificate | None = None,
    mqtt_prefix: str = TOPIC_PREFIX,
) -> MeterLink:
    """The meter side of `transport` pointed at `target` (MQTT meters log in if given passwords).

    An ``https://`` target is verified against `ca` (the deployment's CA).
    """
    if transport == "tcp":
        host, port = parse_address(target, 7400)
        return TcpLink(host, port)
    if transport == "http":
        from meterseal.acquisition.http import HttpLink
        from meterseal.runtime.tls import client_context

        verify = client_context(ca) if ca is not None and target.startswith("https:") else None
        return HttpLink(target if "://" in target else f"http://{target}", verify=verify)
    if transport == "mqtt":
        from meterseal.acquisition.mqtt import MqttLink

        url = target if "://" in target else f"mqtt://{target}"
        return MqttLink(url, passwords=mqtt_passwords, prefix=mqtt_prefix)
    raise ConfigurationError(f"unknown transport {transport!r}; choose one of {TRANSPORTS}")


def target_address(transport: str, target: str) -> tuple[str, int]:
    """The host and TCP port a transport's target listens on (a URL's default port if none)."""
    if transport == "tcp" or "://" not in target:
        default = {"tcp": 7400, "http": 80, "mqtt": 1883}.get(transport, 7400)
        return parse_address(target, default)
    parts = urlsplit(target)
    default = {"https": 443, "http": 80, "mqtts": 8883}.get(parts.scheme, 1883)
    return parts.hostname or "127.0.0.1", parts.port or default


async def wait_for_listener(transport: str, target: str, wait: float) -> None:
    """Return once something accepts connections at the target; HeadEndUnreachable after `wait`."""
    host, port = target_address(transport, target)
    deadline = time.monotonic() + wait
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=2.0)
        except (OSError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                what = "head-end" if transport != "mqtt" else "MQTT broker"
                errno = getattr(exc, "errno", None)
                why = os.strerror(errno) if errno else "no answer"
                raise HeadEndUnreachable(
                    f"no {what} answers at {target} ({transport}) after {wait:g} s ({why}): "
                    "start `meterseal serve` first, or point --target at it"
                ) from exc
            await asyncio.sleep(0.25)
        else:
            writer.close()
            return


@dataclass
class SimulationOutcome:
    """What the fleet sent, what the head-end answered, and what the store kept if it was read."""

    report: SimulationReport
    packets: int
    kept: Counter[str] | None = (
        None  # the store's outcomes of this run (stored, duplicate, reasons)
    )
    settled: bool = True  # the store counted every answered packet within the wait
    notes: list[str] = field(default_factory=list)

    @property
    def refused_after_ack(self) -> int:
        """Packets ACCEPTED by the head-end that the store then refused (services mode)."""
        if self.kept is None:
            return 0
        kept = self.kept["stored"] + self.kept["duplicate"]
        return max(0, self.report.acks["accepted"] - kept)


def simulate(
    console: Console,
    deployment: Deployment,
    fleet: list[ProvisionedMeter],
    plan: SimulationPlan,
    passphrase: bytes | None = None,
) -> SimulationOutcome:
    """Seal the fleet's readings of the plan's period, send them, print what became of them."""
    now = dt.datetime.now(dt.UTC)
    console.print(
        f"{len(fleet):,} meters, {plan.intervals:,} readings each, {_when(plan.start)} to "
        f"{_when(plan.end)}"
    )
    before = _store_counts(console, plan.store, fleet, plan.start)
    with console.status(f"waiting for the head-end at {plan.target}"):
        asyncio.run(wait_for_listener(plan.transport, plan.target, plan.wait))
    work = Workload(
        fleet,
        deployment.headend.public(),
        plan.start,
        plan.intervals,
        FaultPlan.every_fault(plan.faults) if plan.faults else FaultPlan(),
        seed=plan.seed,
    )
    with progress_bar(console) as bar:
        task = bar.add_task("meters seal their readings", total=len(fleet))
        wire = seal_workload(work, now=now, progress=lambda n: bar.advance(task, n))
    link = link_for(
        plan.transport,
        plan.target,
        mqtt_passwords=_mqtt_passwords(deployment, plan, passphrase),
        ca=deployment.ca_cert,
        mqtt_prefix=plan.mqtt_prefix,
    )
    total = sum(len(p) for p in wire.values())
    report = SimulationReport()
    with progress_bar(console) as bar:
        label = f"sending over {plan.transport} to {plan.target}"
        task = bar.add_task(label, total=total)

        def show(errors: int) -> None:
            bar.update(task, description=f"{label} ({errors:,} connection errors, retrying)")

        asyncio.run(_send(wire, link, plan, report, lambda n: bar.advance(task, n), show))
    outcome = SimulationOutcome(report, total)
    for line in answer_lines(report) + simulation_summary(report):
        console.print(line)
    if before is not None and plan.store is not None:
        answered = report.acks["accepted"] + report.acks["rejected"]
        with console.status("waiting for the store to count them"):
            outcome.kept, outcome.settled = settle_store(plan.store, before, answered, plan.wait)
        for line in store_lines(outcome):
            console.print(line)
    if report.unacknowledged:
        raise HeadEndUnreachable(
            f"{report.unacknowledged:,} of {total:,} packets unacknowledged: the head-end at "
            f"{plan.target} stopped answering ({report.connection_errors:,} connection errors)"
        )
    if plan.start % DAY == 0 and plan.intervals % (DAY // INTERVAL) == 0:
        console.print(
            f"bill this period with: meterseal bill --from {_day(plan.start)} "
            f"--days {plan.intervals * INTERVAL // DAY} …"
        )
    return outcome


def _store_counts(
    console: Console, url: str | None, fleet: list[ProvisionedMeter], start: int
) -> Counter[str] | None:
    """The store's outcome counters now, warning about counters the period would send again."""
    if url is None:
        return None
    from meterseal.storage import Store

    try:
        with Store.open_read_only(url) as store:
            counts = Counter(store.counters())
            last = store.last_counters()
    except MetersealError as exc:
        console.print(f"not counting what the store keeps: {exc.diagnostics()}")
        return None
    first = start // INTERVAL
    again = [m.key.meter_id for m in fleet if last.get(m.key.meter_id, (-1, 0))[0] >= first]
    if again:
        newest = max(last[m][1] for m in again)
        console.print(
            f"warning: the store already holds readings of {len(again):,} of these meters in "
            f"this period (up to {_when(newest)}): sent again with new signatures, they are "
            "refused (replayed_counter, or stale_counter far below the newest)"
        )
    return counts


def settle_store(
    url: str, before: Counter[str], answered: int, wait: float
) -> tuple[Counter[str], bool]:
    """The store's outcomes since `before` once they add up to `answered` (or stop growing)."""
    from meterseal.storage import Store

    seen, changed = -1, time.monotonic()
    with Store.open_read_only(url) as store:
        while True:
            kept = Counter(store.counters())
            kept.subtract(before)
            kept = +kept
            counted = sum(kept.values())
            if counted >= answered:
                return kept, True
            if counted != seen:
                seen, changed = counted, time.monotonic()
            elif time.monotonic() - changed > wait:
                return kept, False
            time.sleep(0.2)


def store_lines(outcome: SimulationOutcome) -> list[str]:
    """What the store kept of this run, and what it refused after the head-end's ack."""
    kept = outcome.kept
    if kept is None:
        return []
    refused = {k: v for k, v in sorted(kept.items()) if k not in ("stored", "duplicate")}
    reasons = ", ".join(f"{k} {v:,}" for k, v in refused.items()) or "none"
    lines = [
        f"the store kept {kept['stored']:,} readings ({kept['duplicate']:,} duplicates) "
        f"and refused {sum(refused.values()):,}: {reasons}"
    ]
    # Accepted but not kept is refused only as far as the store counted refusals; the rest
    # is not counted yet (the stages may still be working: said below).
    refused_after_ack = min(outcome.refused_after_ack, sum(refused.values()))
    if refused_after_ack:
        lines.append(
            f"accepted by the receiver: {outcome.report.acks['accepted']:,}, of which the store "
            f"then refused {refused_after_ack:,} ({reasons})"
        )
    if not outcome.settled:
        answered = outcome.report.acks["accepted"] + outcome.report.acks["rejected"]
        lines.append(
            f"the store had counted {sum(kept.values()):,} of the {answered:,} answered packets "
            "when its counts stopped growing: the stages may still be working"
        )
    return lines


def _mqtt_passwords(
    deployment: Deployment, plan: SimulationPlan, passphrase: bytes | None
) -> Callable[[str], str] | None:
    """The meters' MQTT passwords, when the deployment has an MQTT secret (`mqtt setup`)."""
    if plan.transport != "mqtt":
        return None
    from meterseal.acquisition import mosquitto

    secret = mosquitto.deployment_meter_secret(deployment.directory, passphrase)
    return None if secret is None else mosquitto.meter_passwords(secret)


async def _send(
    wire: Wire,
    link: MeterLink,
    plan: SimulationPlan,
    report: SimulationReport,
    advance: Callable[[int], object],
    show_errors: Callable[[int], object],
) -> None:
    fleet = asyncio.create_task(
        run_fleet(
            wire,
            link,
            concurrency=plan.concurrency,
            window=plan.window,
            pace=plan.pace,
            progress=advance,
            report=report,
        )
    )
    try:
        # Watch the run: connection errors are shown as they come, and a head-end that stops
        # answering for `wait` seconds ends it (what was not acknowledged is counted).
        answered, errors, since = 0, 0, time.monotonic()
        while not fleet.done():
            await asyncio.wait({fleet}, timeout=0.25)
            now_answered = sum(report.acks.values())
            if report.connection_errors != errors:
                errors = report.connection_errors
                show_errors(errors)
            if now_answered != answered:
                answered, since = now_answered, time.monotonic()
            elif errors and time.monotonic() - since > plan.wait:
                fleet.cancel()
                break
        try:
            await fleet
        except asyncio.CancelledError:
            report.unacknowledged = sum(len(p) for p in wire.values()) - sum(report.sent.values())
    finally:
        close = getattr(link, "aclose", None) or getattr(link, "close", None)
        if close is not None:
            await close()


def answer_lines(report: SimulationReport) -> list[str]:
    """What the head-end answered, and the faults the meters injected (if any), as lines."""
    answered = sum(v for k, v in report.acks.items() if k != "retry")
    acks = ", ".join(f"{k} {v:,}" for k, v in sorted(report.acks.items()) if k != "retry")
    lines = [f"the head-end answered {answered:,} packets: {acks or 'none'}"]
    if set(report.sent) - {"none"}:
        faults = ", ".join(f"{k} {v:,}" for k, v in sorted(report.sent.items()))
        lines.append(f"sent with injected faults: {faults}")
    return lines


def simulation_summary(report: SimulationReport) -> list[str]:
    """Throughput, send→ack latency, resends and errors of one simulation, as lines."""
    sent = sum(report.sent.values())
    lat = np.array(report.latencies) if report.latencies else None
    p50 = _ms(None if lat is None else float(np.percentile(lat, 50)))
    p99 = _ms(None if lat is None else float(np.percentile(lat, 99)))
    return [
        f"{sent:,} packets in {report.seconds:.1f} s = {sent / max(report.seconds, 1e-9):,.0f}/s; "
        f"window send→ack p50 {p50}, p99 {p99}",
        f"resent {report.resent:,}, connection errors {report.connection_errors:,}, "
        f"unacknowledged {report.unacknowledged:,}",
    ]
