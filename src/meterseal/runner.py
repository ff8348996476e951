"""What `meterseal serve` and `meterseal simulate` do, apart from parsing their options."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from cryptography import x509
from rich.console import Console
from rich.table import Table

from meterseal.acquisition.headend import HeadEnd, HeadEndReport, HeadEndSettings
from meterseal.acquisition.links import MeterLink
from meterseal.acquisition.mqtt_endpoint import TOPIC_PREFIX
from meterseal.acquisition.tcp import TcpLink
from meterseal.deployment import Deployment, TrustedMaterial
from meterseal.errors import ConfigurationError
from meterseal.meter.faults import FaultPlan
from meterseal.meter.load import INTERVAL
from meterseal.meter.provisioning import ProvisionedMeter
from meterseal.meter.simulator import SimulationReport, run_fleet
from meterseal.meter.workload import Wire, Workload, seal_workload
from meterseal.runtime.address import parse_address
from meterseal.storage import Store
from meterseal.ui import milliseconds as _ms
from meterseal.ui import progress_bar

TRANSPORTS = ("tcp", "http", "mqtt")


def serve(
    console: Console,
    deployment: Deployment,
    store_url: str,
    settings: HeadEndSettings,
    *,
    status_every: float = 10.0,
    admin: str | None = "127.0.0.1:0",
) -> HeadEndReport:
    """Run the head-end until SIGINT or SIGTERM; print its endpoints, status lines and summary."""
    return asyncio.run(_serve(console, deployment, store_url, settings, status_every, admin))


async def _serve(
    console: Console,
    deployment: Deployment,
    store_url: str,
    settings: HeadEndSettings,
    status_every: float,
    admin: str | None,
) -> HeadEndReport:
    from meterseal.runtime.lifecycle import serve_stage
    from meterseal.services.frontends import MonolithService

    with Store.open(store_url) as store:
        service = MonolithService(TrustedMaterial.of(deployment), store, settings)
        headend = service.headend
        # One parseable line per endpoint (printed by `serve_stage`): scripts wait for these.
        status = asyncio.create_task(_status(console, headend, status_every))
        try:
            await serve_stage(service, admin=admin)
        finally:
            status.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status
        report = headend.report()
    console.print(report_table(report))
    return report


async def _status(console: Console, headend: HeadEnd, every: float) -> None:
    while not headend.endpoints:
        await asyncio.sleep(0.05)
    console.print(f"head-end ready: {len(headend.registry)} meters in the registry")
    while True:
        await asyncio.sleep(every)
        console.print(status_line(headend.report()))


def status_line(report: HeadEndReport) -> str:
    """One line of counters for the log."""
    stages = ", ".join(f"{k} {v}" for k, v in sorted(report.stages.items()))
    return (
        f"[dim]{dt.datetime.now(dt.UTC):%H:%M:%S}[/dim] accepted {report.accepted:,} "
        f"({report.throughput:,.0f}/s) · {stages or 'nothing yet'}"
    )


def report_table(report: HeadEndReport) -> Table:
    """The head-end's counters by stage and transport, and its latency."""
    table = Table(title="head-end summary")
    table.add_column("where")
    table.add_column("counter")
    table.add_column("count", justify="right")
    for name, counts in [
        ("stages", report.stages),
        ("ingest", report.ingest),
        ("quarantine", report.quarantine),
    ] + [(f"receiver {t}", c) for t, c in report.transports.items()]:
        for key, value in sorted(counts.items()):
            table.add_row(name, key, f"{value:,}")
    table.caption = (
        f"acquisition latency p50 {_ms(report.latency_p50)}, p99 {_ms(report.latency_p99)}"
    )
    return table


@dataclass(frozen=True)
class SimulationPlan:
    """What `meterseal simulate` sends, where and how fast."""

    transport: str
    target: str
    days: float
    faults: float
    concurrency: int
    window: int
    pace: float
    seed: int
    mqtt_prefix: str = TOPIC_PREFIX  # topics of the MQTT transport


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


def simulate(
    console: Console,
    deployment: Deployment,
    fleet: list[ProvisionedMeter],
    plan: SimulationPlan,
    passphrase: bytes | None = None,
) -> SimulationReport:
    """Seal the fleet's last `days` of readings, send them, print what the head-end answered."""
    now = dt.datetime.now(dt.UTC)
    intervals = max(1, round(plan.days * 96))
    start = (int(now.timestamp()) // INTERVAL - intervals) * INTERVAL
    work = Workload(
        fleet,
        deployment.headend.public(),
        start,
        intervals,
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
    with progress_bar(console) as bar:
        total = sum(len(p) for p in wire.values())
        task = bar.add_task(f"sending over {plan.transport} to {plan.target}", total=total)
        report = asyncio.run(_send(wire, link, plan, lambda n: bar.advance(task, n)))
    console.print(simulation_table(report))
    return report


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
    advance: Callable[[int], object],
) -> SimulationReport:
    try:
        return await run_fleet(
            wire,
            link,
            concurrency=plan.concurrency,
            window=plan.window,
            pace=plan.pace,
            progress=advance,
        )
    finally:
        close = getattr(link, "aclose", None) or getattr(link, "close", None)
        if close is not None:
            await close()


def simulation_table(report: SimulationReport) -> Table:
    """Acks, injected faults, throughput and send→ack latency of one simulation."""
    table = Table(title="fleet simulation: what the head-end answered")
    table.add_column("")
    table.add_column("packets", justify="right")
    for ack, count in sorted(report.acks.items()):
        table.add_row(f"ack {ack}", f"{count:,}")
    for fault, count in sorted(report.sent.items()):
        table.add_row(f"fault {fault}", f"{count:,}")
    sent = sum(report.sent.values())
    lat = np.array(report.latencies) if report.latencies else None
    table.caption = (
        f"{sent:,} packets in {report.seconds:.1f} s = {sent / max(report.seconds, 1e-9):,.0f}/s; "
        f"window send→ack p50 {_ms(None if lat is None else float(np.percentile(lat, 50)))}, "
        f"p99 {_ms(None if lat is None else float(np.percentile(lat, 99)))}; "
        f"resent {report.resent:,}, connection errors {report.connection_errors}, "
        f"unacknowledged {report.unacknowledged:,}"
    )
    return table
