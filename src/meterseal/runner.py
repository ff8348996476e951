"""What `meterseal serve` does, apart from parsing its options (simulate: simulation.py)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

from rich.console import Console
from rich.table import Table

from meterseal.acquisition.headend import HeadEnd, HeadEndReport, HeadEndSettings
from meterseal.deployment import Deployment, TrustedMaterial
from meterseal.storage import Store
from meterseal.ui import milliseconds as _ms


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
