"""The `meterseal bench` commands: reproducible experiments printing tables and writing plots."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from meterseal.cli_common import AUTO_OPEN_WORKERS, SUITE_HELP, console
from meterseal.crypto.suites import suite_named
from meterseal.services.cli import NatsUrl
from meterseal.ui import TextTable, print_table, print_written

bench_app = typer.Typer(
    help="Reproducible experiments (tables, plots, docs/benchmarks.md).", no_args_is_help=True
)
PlotDir = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="directory for the plots [default: $XDG_CACHE_HOME/meterseal/bench, "
        "else ~/.cache/meterseal/bench]",
        show_default=False,
    ),
]


OpenWorkers = Annotated[int, typer.Option(help="processes opening packets")]
INGEST_OPEN_WORKERS = max(AUTO_OPEN_WORKERS, 1)  # at least one, however few cores


def plot_dir(out: Path | None) -> Path:
    """Where a bench writes its plots: `--out`, else the per-user cache, never the checkout."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return out if out is not None else Path(cache) / "meterseal" / "bench"


def _report(
    tables: Iterable[TextTable], draw: Callable[[Path], Path], out: Path | None, name: str
) -> None:
    """Print a bench's tables, then draw its plot bench-`name`.png and say where it went."""
    for table in tables:
        print_table(console, table)
    print_written(console, "plot", draw(plot_dir(out) / f"bench-{name}.png"))


def _failed(why: str) -> NoReturn:
    """A bench whose verdict failed: say why, exit 1."""
    console.print(f"[red]error:[/red] {why}")
    raise typer.Exit(code=1)


@bench_app.command("connections")
def bench_connections(
    meters: Annotated[int, typer.Option(help="meters connected at once")] = 65_000,
    relays: Annotated[int, typer.Option(help="relay processes (0: one per 14,000 meters)")] = 0,
    senders: Annotated[
        int, typer.Option(help="meter-side processes (0: one per 16,250 meters)")
    ] = 0,
    readings: Annotated[int, typer.Option(help="sealed readings each meter sends")] = 1,
    store: Annotated[str, typer.Option(help="sqlite or postgres (at MS_POSTGRES_URL)")] = "sqlite",
    upstreams: Annotated[int, typer.Option(help="head-end connections per relay")] = 8,
    open_workers: OpenWorkers = 1,
    out: PlotDir = None,
) -> None:
    """Meters connected at once over TCP through relay processes; exits 1 unless zero errors."""
    from meterseal.bench.connections import (
        ConnectionsPlan,
        plot_connections,
        result_table,
        run_connections,
    )
    from meterseal.bench.timing import Machine

    plan = ConnectionsPlan(meters, relays, senders, readings, store, upstreams, open_workers)
    result = run_connections(console, plan)
    table = result_table([result], Machine.probe(None))
    _report([table], functools.partial(plot_connections, result), out, "connections")
    if not result.ok:
        _failed(f"not zero errors: {dict(+result.errors)}")


@bench_app.command("crypto")
def bench_crypto(
    seconds: Annotated[float, typer.Option(help="measuring time per operation")] = 1.0,
    out: PlotDir = None,
) -> None:
    """Seal/open per suite against the raw primitives, plus the SGX paper's experiment 3.1."""
    from meterseal.bench.crypto import run_bench

    run_bench(console, seconds=seconds, out_dir=plot_dir(out))


@bench_app.command("ingest")
def bench_ingest(
    suite: Annotated[list[str], typer.Option(help=SUITE_HELP)] = ["p256", "paper"],  # noqa: B006
    store: Annotated[list[str], typer.Option(help="sqlite and/or postgres")] = ["sqlite"],  # noqa: B006
    transport: Annotated[
        str, typer.Option(help="tcp, mqtt (Mosquitto at MS_MQTT_URL) or inproc")
    ] = "tcp",
    meters: Annotated[int, typer.Option(help="meters (the paper suite uses an eighth)")] = 1000,
    readings: Annotated[int, typer.Option(help="readings per meter")] = 24,
    open_workers: OpenWorkers = INGEST_OPEN_WORKERS,
    out: PlotDir = None,
) -> None:
    """Packets/s from sent to durable per suite and store, beside the open-only bound."""
    from meterseal.bench.ingest import plot_ingest, result_table, run_suite
    from meterseal.bench.timing import Machine

    results = []
    for store_kind in store:
        for name in suite:
            chosen = suite_named(name)
            count = max(1, meters // 8) if chosen.name == "paper" else meters
            results.append(
                run_suite(
                    console,
                    chosen,
                    store_kind=store_kind,
                    transport=transport,
                    meters=count,
                    readings=readings,
                    open_workers=open_workers,
                )
            )
    table = result_table(results, Machine.probe(None))
    _report([table], functools.partial(plot_ingest, results), out, "ingest")


@bench_app.command("trusted-overhead")
def bench_trusted_overhead(
    seconds: Annotated[float, typer.Option(help="measuring time per operation and size")] = 0.5,
    runs: Annotated[int, typer.Option(help="interleaved runs; the median counts")] = 15,
    out: PlotDir = None,
) -> None:
    """The SGX paper's experiment 3.1 inside vs outside an attested trusted worker."""
    from meterseal.bench.trusted import run_trusted_overhead

    run_trusted_overhead(console, seconds=seconds, runs=runs, out_dir=plot_dir(out))


@bench_app.command("deployments")
def bench_deployments(
    mode: Annotated[
        list[str] | None, typer.Option(help="modes to run [default: monolith services trusted]")
    ] = None,
    intervals: Annotated[int, typer.Option(help="readings in the month (2,880 = 30 days)")] = 2880,
    store: Annotated[str, typer.Option(help="sqlite, or a PostgreSQL URL")] = "sqlite",
    workers: Annotated[
        list[int] | None, typer.Option(help="services-mode workers per stage [default: 1 2 4]")
    ] = None,
    scale_meters: Annotated[int, typer.Option(help="meters in the scaling fleet")] = 100,
    scale_intervals: Annotated[int, typer.Option(help="readings per scaling meter")] = 96,
    nats: NatsUrl = None,
    out: PlotDir = None,
) -> None:
    """The SGX paper's experiment 3.2: monolith vs services vs trusted, same machine, one run."""
    from meterseal.bench.deployments import MODES, BenchPlan, run_deployments
    from meterseal.bench.deployments_report import mode_table, plot_deployments, scaling_table

    plan = BenchPlan(
        tuple(mode or MODES), intervals, store, tuple(workers or (1, 2, 4)), scale_meters,
        scale_intervals, nats,
    )  # fmt: skip
    bench = run_deployments(console, plan)
    tables = (mode_table(bench), scaling_table(bench))
    _report(tables, functools.partial(plot_deployments, bench), out, "deployments")


@bench_app.command("billing")
def bench_billing(
    customers: Annotated[
        list[int], typer.Option(help="customers billed per round; each round bills fresh ones")
    ] = [1, 100, 10_000],  # noqa: B006
    store: Annotated[
        list[str], typer.Option(help="sqlite and/or postgres (at MS_POSTGRES_URL)")
    ] = ["sqlite", "postgres"],  # noqa: B006
    suite: Annotated[str, typer.Option(help="meter " + SUITE_HELP)] = "p256",
    audits: Annotated[int, typer.Option(help="bills audited per round, spread over it")] = 10,
    intervals: Annotated[int, typer.Option(help="readings per customer month")] = 2880,
    cache: Annotated[
        Path | None,
        typer.Option(help="directory keeping the signed months for later runs (default: none)"),
    ] = None,
    out: PlotDir = None,
) -> None:
    """The SGX billing paper's aggregation per bill (query → recorded) and its audit."""
    from meterseal.bench.billing import audit_table, bill_table, run_billing
    from meterseal.bench.billing_plot import plot_billing

    try:
        bench = run_billing(
            console,
            suite_named(suite),
            customers=customers,
            stores=store,
            audits=audits,
            intervals=intervals,
            cache=cache,
        )
    except (KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    tables = (bill_table(bench), audit_table(bench))
    _report(tables, functools.partial(plot_billing, bench), out, "billing")
    if bench.findings:
        _failed(f"the audits found {bench.findings} discrepancies")


@bench_app.command("integrity")
def bench_integrity(
    intervals: Annotated[int, typer.Option(help="meter intervals per run (as fast as it can)")] = (
        400_000
    ),
    persist_every: Annotated[
        int, typer.Option(help="intervals between energy-register writes (trapped)")
    ] = 1000,
    repeats: Annotated[int, typer.Option(help="interleaved runs of each mode")] = 11,
    measure_seconds: Annotated[
        float, typer.Option(help="seconds timing one dynamic measurement")
    ] = 2.0,
    out: PlotDir = None,
) -> None:
    """The meter program bare vs under the integrity monitor; exits 1 above 1.1x."""
    from meterseal.bench.integrity import plot_integrity, result_table, run_integrity
    from meterseal.bench.timing import Machine

    bench = run_integrity(
        console,
        intervals=intervals,
        persist_every=persist_every,
        repeats=repeats,
        measure_seconds=measure_seconds,
    )
    table = result_table(bench, Machine.probe(None))
    _report([table], functools.partial(plot_integrity, bench), out, "integrity")
    if not bench.ok:
        raise typer.Exit(code=1)


@bench_app.command("dissemination")
def bench_dissemination(
    rates: Annotated[
        list[int] | None,
        typer.Option(help="offered publications/s, one run each (default: 1,000 … 40,000)"),
    ] = None,
    seconds: Annotated[float, typer.Option(help="seconds per offered rate")] = 10.0,
    burst: Annotated[int, typer.Option(help="publications in the burst")] = 1_000_000,
    isolated: Annotated[int, typer.Option(help="isolated publications")] = 100,
    meters: Annotated[int, typer.Option(help="meters (customers) publishing")] = 5_000,
    subscriptions: Annotated[int, typer.Option(help="subscriptions at the router")] = 10_000,
    runs: Annotated[int, typer.Option(help="runs per aggregation size (figure 2)")] = 10,
    paillier_bits: Annotated[int, typer.Option(help="Paillier modulus bits")] = 2048,
    nats: Annotated[str, typer.Option("--nats", help="NATS server URL")] = os.environ.get(
        "MS_NATS_URL", "nats://127.0.0.1:4222"
    ),
    out: PlotDir = None,
) -> None:
    """The dissemination paper's experiments: isolated, 1M burst, rates, HE vs trusted."""
    from meterseal.bench.dissemination import RATES, DisseminationPlan, run_dissemination
    from meterseal.bench.dissemination_report import (
        aggregation_table,
        inprocess_table,
        latency_table,
        plot_dissemination,
        rate_table,
    )

    plan = DisseminationPlan(
        nats, tuple(rates or RATES), seconds, burst, isolated, meters=meters,
        subscriptions=subscriptions, runs=runs, paillier_bits=paillier_bits,
    )  # fmt: skip
    bench = run_dissemination(console, plan)
    tables = (
        make(bench) for make in (latency_table, rate_table, inprocess_table, aggregation_table)
    )
    _report(tables, functools.partial(plot_dissemination, bench), out, "dissemination")


@bench_app.command("fraud")
def bench_fraud(
    customers: Annotated[int, typer.Option(help="customers ranked (0: no scale run)")] = 65_000,
    days: Annotated[int, typer.Option(help="days of 15-minute readings per customer")] = 30,
    eval_customers: Annotated[
        int, typer.Option(help="labelled simulated customers evaluated (>= 5,000)")
    ] = 10_000,
    share: Annotated[float, typer.Option(help="share of thieves in the labelled fleet")] = 0.08,
    supervised: Annotated[
        bool, typer.Option("--supervised/--no-supervised", help="add the supervised row")
    ] = True,
    trace: Annotated[
        Path | None,
        typer.Option(help="UCI household trace (default: shared/data's, found above here)"),
    ] = None,
    source_customers: Annotated[
        int | None, typer.Option(help="customers per real-data source (default: each's own)")
    ] = None,
    out: PlotDir = None,
) -> None:
    """Rank 65,000 customers x 30 days (time, memory); AUC, MAP@N, recall vs IF and LOF on
    the simulator and on real household data with injected thieves, side by side."""
    from meterseal.bench.fraud import run_bench
    from meterseal.bench.fraud_sources import default_trace

    ok = run_bench(
        console,
        customers=customers,
        days=days,
        eval_customers=eval_customers,
        share=share,
        with_supervised=supervised,
        out=plot_dir(out),
        trace=trace or default_trace(),
        source_customers=source_customers,
    )
    if not ok:
        raise typer.Exit(code=1)


@bench_app.command("kvs")
def bench_kvs(
    clients: Annotated[int, typer.Option(help="client processes for Fig. 6")] = 8,
    seconds: Annotated[float, typer.Option(help="window per Fig. 6 cell (seconds)")] = 2.0,
    nodes: Annotated[int, typer.Option(help="local-directory storage nodes (>= 9)")] = 10,
    quick: Annotated[
        bool, typer.Option("--quick", help="small sizes, 2 clients, short windows (a smoke run)")
    ] = False,
    nats: Annotated[
        bool,
        typer.Option("--nats", help="also on a local 5-server NATS cluster (needs nats-server)"),
    ] = False,
    work: Annotated[
        Path | None, typer.Option(help="directory for the nodes' files [default: the temp dir]")
    ] = None,
    out: PlotDir = None,
) -> None:
    """Secure KVS: Fig. 5 bytes per policy, Fig. 6 ops/s by size, a failure run, the codec."""
    import dataclasses

    from meterseal.bench.kvs import QUICK, KvsPlan
    from meterseal.bench.kvs_report import correct, run_bench

    if nodes < 9:
        raise typer.BadParameter("hybrid:6+2 needs 9 distinct nodes: --nodes 9 or more")
    plan = QUICK if quick else KvsPlan(clients=clients, seconds=seconds)
    plan = dataclasses.replace(plan, nodes=nodes, nats=nats)
    result = run_bench(console, plan, plot_dir(out), work)
    if not correct(result):
        _failed("a correctness verdict failed (see the tables)")


@bench_app.command("cascadb")
def bench_cascadb(
    meters: Annotated[int, typer.Option(help="meters, each with a month of readings")] = 4,
    readings: Annotated[int, typer.Option(help="readings per meter (a 15-minute month)")] = 2880,
    quick: Annotated[
        bool, typer.Option("--quick", help="2 meters of 192 readings (a smoke run)")
    ] = False,
    out: PlotDir = None,
) -> None:
    """CascaDB: SQL inserts, point, range and join beside the bare KVS, memory, PostgreSQL."""
    import dataclasses

    from meterseal.bench.cascadb import QUICK, CascadbPlan
    from meterseal.bench.cascadb_report import run_bench

    plan = QUICK if quick else CascadbPlan(meters=meters, readings=readings)
    plan = dataclasses.replace(plan, postgres=os.environ.get("MS_POSTGRES_URL"))
    bench = run_bench(console, plan, plot_dir(out))
    if not bench.agreed:
        _failed("the systems' answers differ (see the table)")


@bench_app.command("jobs")
def bench_jobs(
    customers: Annotated[int, typer.Option(help="bills in the job (one simulated meter each)")] = (
        200
    ),
    days: Annotated[int, typer.Option(help="days of readings per bill")] = 1,
    chunk: Annotated[int, typer.Option(help="bills per task")] = 10,
    share: Annotated[
        float, typer.Option(help="deadline as a share of the 1-worker run's time")
    ] = 0.7,
    interval: Annotated[float, typer.Option(help="seconds between checks at most")] = 0.5,
    threads: Annotated[
        bool, typer.Option("--threads", help="workers as threads of this process (quick check)")
    ] = False,
    out: PlotDir = None,
) -> None:
    """The validation job on Dask: bills/s per worker and the paper's deadline experiment."""
    from meterseal.bench.jobs import deadline_table, plot_jobs, run_jobs_bench, throughput_table

    bench = run_jobs_bench(
        console,
        customers=customers,
        days=days,
        chunk=chunk,
        share=share,
        interval=interval,
        processes=not threads,
    )
    tables = (throughput_table(bench), deadline_table(bench))
    _report(tables, functools.partial(plot_jobs, bench), out, "jobs")


@bench_app.command("agent")
def bench_agent(
    meters: Annotated[int, typer.Option(help="emulated meters read at once")] = 16,
    days: Annotated[int, typer.Option(help="days of load profile per meter and pass")] = 1,
    rounds: Annotated[
        int, typer.Option(help="measured passes (after a warm-up); the best counts")
    ] = 3,
    protocol: Annotated[
        list[str] | None,
        typer.Option(help="protocols [default: nbr14522 nbr14522-sealed dlms dlms-hdlc]"),
    ] = None,
    out: PlotDir = None,
) -> None:
    """Readings/s one sealing agent reads and seals from emulated meters vs the line's bounds."""
    import tempfile

    from meterseal.bench.agent import PROTOCOLS, agent_table, plot_agent, run_agent_bench
    from meterseal.bench.timing import Machine

    with tempfile.TemporaryDirectory(prefix="meterseal-bench-agent-") as where:
        runs = run_agent_bench(
            console,
            meters=meters,
            days=days,
            rounds=rounds,
            protocols=protocol or list(PROTOCOLS),
            where=Path(where),
        )
    table = agent_table(runs, Machine.probe(None).line())
    _report([table], functools.partial(plot_agent, runs), out, "agent")
