"""Tables and the plot of `bench dissemination`."""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from meterseal.bench.dissemination import (
    TARGET_BURST_S,
    TARGET_P99_MS,
    TARGET_RATE,
    DisseminationBench,
    Phase,
)
from meterseal.ui import TextTable, Verdict, pass_fail

BURST_WINDOW = 15.0  # seconds of the burst the latency panel shows (the paper's fig. 4: 15 s)


def _ms(value: float) -> str:
    return f"{value:,.1f}"


def _per(cpu_share: float, phase: Phase) -> str:
    """CPU µs per publication: a machine-load-independent figure of the same run."""
    return f"{cpu_share / phase.achieved * 1e6:.1f}" if phase.achieved else "n/a"


def _notes(bench: DisseminationBench) -> tuple[str, ...]:
    m, plan = bench.machine, bench.plan
    load = " / ".join(f"{x:.2f}" for x in bench.load_before)
    return (
        f"{m.cpu}, {m.cpus} logical CPUs, {m.python}; router, aggregator and producer are "
        f"separate processes on NATS ({plan.nats_url}); {plan.subscriptions:,} subscriptions; "
        f"{plan.meters:,} meters",
        f"load average before: {load}; after: {' / '.join(f'{x:.2f}' for x in m.load)}",
        "latency: header time at sealing -> decrypted and aggregated by the aggregator",
        "CPU: share of one core; simulated attestation (no hardware guarantee)",
    )


def latency_table(bench: DisseminationBench) -> TextTable:
    """Isolated publications and the burst."""
    burst = bench.burst
    drained = burst.received == burst.sent and burst.seconds < TARGET_BURST_S if burst else None
    rows = []
    for phase in (bench.isolated, bench.burst):
        if phase is None:
            continue
        lat = phase.latency
        verdict = ""
        if phase is burst and drained is not None:
            verdict = f"drained in {phase.seconds:.1f} s: {pass_fail(drained)}"
        rows.append(
            (
                phase.name, f"{phase.sent:,}", f"{phase.received:,}", f"{phase.achieved:,.0f}",
                _ms(lat["mean"]), _ms(lat["p50"]), _ms(lat["p99"]), _ms(lat["max"]),
                f"{phase.router_cpu:.0%}", verdict,
            )
        )  # fmt: skip
    return TextTable(
        f"Isolated publications and a burst of {bench.plan.burst:,} (target: drained < "
        f"{TARGET_BURST_S:.0f} s; the paper: ~53 s without SGX, ~60 s with)",
        ("phase", "sent", "aggregated", "per s", "mean ms", "p50 ms", "p99 ms", "max ms",
         "router CPU", "verdict"),
        rows,
        _notes(bench),
        Verdict(f"the burst all aggregated within {TARGET_BURST_S:.0f} s", drained),
    )  # fmt: skip


def inprocess_table(bench: DisseminationBench) -> TextTable:
    """The embedded pipeline's CPU per publication."""
    ip = bench.inproc
    rows = []
    if ip is not None:
        per = 1e6 / ip.publications
        rows.append(
            (
                f"{ip.publications:,}", f"{ip.seal_cpu * per:.1f}", f"{ip.route_cpu * per:.1f}",
                f"{ip.aggregate_cpu * per:.1f}", f"{ip.cpu * per:.1f}", f"{ip.per_second:,.0f}",
                f"{ip.publications / ip.wall:,.0f}",
            )
        )  # fmt: skip
    return TextTable(
        "In-process (the embedded default): CPU µs per publication, one core",
        ("publications", "seal", f"route ({bench.plan.subscriptions:,} subscriptions)",
         "decrypt + aggregate", "total",
         "per CPU-second", "per wall-second"),
        rows,
        ("CPU time (process_time), so other processes' load does not count; wall includes it",),
        Verdict("reference figures: the CPU cost per publication in one process", None),
    )  # fmt: skip


def rate_table(bench: DisseminationBench) -> TextTable:
    """Latency and router CPU per offered rate."""
    rows = [
        (
            f"{p.offered:,.0f}", f"{p.achieved:,.0f}", f"{p.received:,}/{p.sent:,}",
            _ms(p.latency["mean"]), _ms(p.latency["p50"]), _ms(p.latency["p99"]),
            f"{p.router_cpu:.0%}", _per(p.router_cpu, p), f"{p.aggregator_cpu:.0%}",
            _per(p.aggregator_cpu, p), pass_fail(p.met),
        )
        for p in bench.rates
    ]  # fmt: skip
    return TextTable(
        f"Offered rate, {bench.plan.seconds:g} s each (target: >= {TARGET_RATE:,}/s with "
        f"p99 < {TARGET_P99_MS:.0f} ms; the paper's ceiling: 20,000/s)",
        ("offered /s", "achieved /s", "aggregated", "mean ms", "p50 ms", "p99 ms",
         "router CPU", "router µs/pub", "aggregator CPU", "aggregator µs/pub", "verdict"),
        rows,
        _notes(bench),
        Verdict(
            f"an offered rate ≥ {TARGET_RATE:,}/s kept up with p99 < {TARGET_P99_MS:.0f} ms",
            any(p.met for p in bench.rates if p.offered >= TARGET_RATE) if bench.rates else None,
        ),
    )  # fmt: skip


def aggregation_table(bench: DisseminationBench) -> TextTable:
    """The paper's figure 2."""
    bits = bench.plan.paillier_bits
    rows = [
        (
            f"{a.n:,}", f"{a.plain * 1e6:,.1f}", f"{a.trusted * 1e3:,.2f}",
            f"{a.trusted_total * 1e3:,.2f}", f"{a.paillier * 1e3:,.1f}",
            f"{a.paillier_total * 1e3:,.0f}", f"{a.paillier_total / a.trusted_total:,.0f}x",
        )
        for a in bench.aggregation
    ]  # fmt: skip
    return TextTable(
        f"Aggregating n measurements, CPU time, mean of {bench.plan.runs} runs "
        "(the paper's figure 2)",
        ("n", "plain µs", "trusted: open + add ms", "trusted with sealing ms",
         f"Paillier-{bits}: add + decrypt ms", "Paillier with encryption ms",
         "Paillier / trusted (with inputs)"),
        rows,
        ("trusted: AES-256-GCM publications (sealed by the head-end) opened with the "
         "aggregator's keys; Paillier: phe with gmpy2, the meters encrypt",),
        Verdict("reference figures: trusted aggregation beside Paillier (figure 2)", None),
    )  # fmt: skip


def _scatter(ax: Axes, phase: Phase, label: str, color: str, limit: float) -> None:
    times, latency = phase.sample
    kept = [(t, v) for t, v in zip(times, latency, strict=True) if t <= limit]
    ax.scatter([t for t, _ in kept], [v for _, v in kept], s=3, label=label, color=color)


def plot_dissemination(bench: DisseminationBench, path: Path) -> Path:
    """Four panels: isolated latency, the burst's first seconds, rates, figure 2."""
    fig = dissemination_figure(bench)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def burst_title(burst: Phase) -> str:
    """The burst panel's title: what the panel shows of this run's burst."""
    # The panel keeps the first BURST_WINDOW seconds; a burst drained sooner is shown whole.
    shown = "whole burst" if burst.seconds <= BURST_WINDOW else f"first {BURST_WINDOW:.0f} s"
    return f"Burst of {burst.sent:,}: {shown} (paper fig. 4); drained in {burst.seconds:.1f} s"


def dissemination_figure(bench: DisseminationBench) -> Figure:
    """The bench's figure, its titles and labels stating this run's sizes."""
    fig = Figure(figsize=(14, 9.5), layout="constrained")
    FigureCanvasAgg(fig)
    (iso, burst), (rates, agg) = fig.subplots(2, 2)
    if bench.isolated is not None:
        subscriptions = f"{bench.plan.subscriptions:,} subscriptions"
        iso.boxplot([bench.isolated.sample[1]], tick_labels=[f"isolated (NATS, {subscriptions})"])
        iso.set_ylabel("latency (ms)")
        iso.set_title(f"Latency of {bench.isolated.sent:,} isolated publications (paper fig. 3)")
    if bench.burst is not None:
        _scatter(burst, bench.burst, "latency", "#1f77b4", BURST_WINDOW)
        burst.set_xlabel("seconds since the burst began")
        burst.set_ylabel("latency (ms)")
        burst.set_title(burst_title(bench.burst))
    offered = [p.offered for p in bench.rates]
    rates.plot(offered, [p.latency["mean"] for p in bench.rates], "o-", label="mean latency")
    rates.plot(offered, [p.latency["p99"] for p in bench.rates], "s--", label="p99 latency")
    rates.axhline(TARGET_P99_MS, color="#d62728", linestyle=":", label="p99 target")
    rates.set_yscale("log")
    rates.set_xlabel("offered publications/s")
    rates.set_ylabel("latency (ms)")
    cpu = rates.twinx()
    cpu.plot(offered, [p.router_cpu * 100 for p in bench.rates], "^-", color="#2ca02c",
             label="router CPU")  # fmt: skip
    cpu.set_ylabel("router CPU (% of one core)")
    rates.set_title("Latency and router CPU vs rate (paper figs. 6, 7)")
    rates.legend(loc="upper left", fontsize=8)
    cpu.legend(loc="lower right", fontsize=8)
    sizes = [a.n for a in bench.aggregation]
    for values, label, style in (
        ([a.paillier_total for a in bench.aggregation], "Paillier: encrypt + add + decrypt", "o-"),
        ([a.paillier for a in bench.aggregation], "Paillier: add + decrypt only", "o:"),
        ([a.trusted_total for a in bench.aggregation], "trusted: seal + open + add", "s-"),
        ([a.trusted for a in bench.aggregation], "trusted: open + add only", "s:"),
        ([a.plain for a in bench.aggregation], "plain", "^-"),
    ):
        agg.plot(sizes, [v * 1e3 for v in values], style, label=label)
    agg.set_yscale("log")
    agg.set_xlabel("measurements aggregated")
    agg.set_ylabel("CPU time (ms)")
    agg.set_title("Homomorphic vs trusted vs plain aggregation (paper fig. 2)")
    agg.legend(fontsize=8)
    fig.suptitle(f"meterseal bench dissemination — {bench.machine.cpu}, {bench.machine.python}")
    return fig
