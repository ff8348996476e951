"""Tables and the figure of `meterseal bench deployments` (the paper's experiment 3.2 style)."""

from __future__ import annotations

from pathlib import Path

from meterseal.bench.deployments import TRUSTED_TARGET, DeploymentsBench, scaling_note
from meterseal.ui import TextTable, Verdict

SIMULATED = "trusted mode runs the simulated attestation backend: no hardware guarantee"


def mode_table(bench: DeploymentsBench) -> TextTable:
    """Acquisition and aggregation per mode."""
    services = bench.mode("services")
    rows = []
    for m in bench.modes:
        ratio = (
            f"{m.acquisition_mean / services.acquisition_mean:.2f}x"
            if services and services.acquisition_mean
            else "-"
        )
        rows.append(
            (
                m.mode,
                str(m.processes),
                f"{m.packets:,}",
                f"{m.acquisition_mean * 1e3:.2f}",
                ratio,
                f"{m.send_seconds / m.packets * 1e3:.2f}",
                f"{m.bill_seconds * 1e3:.1f}",
                f"{m.bill_roundtrip * 1e3:.1f}",
            )
        )
    trusted = bench.trusted_ratio
    return TextTable(
        f"Experiment 3.2: acquisition and aggregation by deployment ({bench.store})",
        (
            "mode",
            "processes",
            "packets",
            "acquisition mean ms",
            "vs services",
            "send→ack ms/packet",
            "bill ms (stage)",
            "bill ms (round trip)",
        ),
        rows,
        (
            "trusted/services per packet: "
            + ("not both measured" if trusted is None else f"{trusted:.2f}x"),
            "acquisition: received → durably stored, mean over the month's packets, from the "
            "storing process's Prometheus histogram",
            "bill: query → computed, checked, signed, recorded, for the "
            f"{bench.intervals:,}-packet month",
            SIMULATED,
        ),
        Verdict(
            f"trusted mode ≤ {TRUSTED_TARGET}x services mode per packet",
            None if trusted is None else trusted <= TRUSTED_TARGET,
        ),
    )


def scaling_table(bench: DeploymentsBench) -> TextTable:
    """Services-mode throughput per worker count."""
    rows = [
        (str(s.workers), f"{s.packets:,}", f"{s.seconds:.2f}", f"{s.rate:,.0f}")
        for s in bench.scaling
    ]
    return TextTable(
        "Services mode: stored packets/s against workers per stage",
        ("workers/stage", "packets", "seconds", "packets/s"),
        rows,
        (scaling_note(bench.scaling), f"{bench.machine.cpus} CPUs: the curve flattens at 2"),
        Verdict("reference figures: how services mode scales with workers on this host", None),
    )


def plot_deployments(bench: DeploymentsBench, path: Path) -> Path:
    """Bars per mode (acquisition, aggregation) and the scaling curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acq, agg, scale) = plt.subplots(1, 3, figsize=(13, 4.2))
    names = [m.mode for m in bench.modes]
    colours = ["#66c2a5", "#8da0cb", "#fc8d62"][: len(names)]
    acq.bar(names, [m.acquisition_mean * 1e3 for m in bench.modes], color=colours)
    acq.set_ylabel("ms per packet (mean)")
    acq.set_title("Acquisition: received → stored")
    agg.bar(names, [m.bill_seconds * 1e3 for m in bench.modes], color=colours, label="stage")
    agg.scatter(names, [m.bill_roundtrip * 1e3 for m in bench.modes], color="k", zorder=3,
                label="round trip")  # fmt: skip
    agg.set_ylabel("ms per bill")
    agg.set_title(f"Aggregation: {bench.intervals:,}-packet month")
    agg.legend(fontsize=8)
    if bench.scaling:
        workers = [s.workers for s in bench.scaling]
        scale.plot(workers, [s.rate for s in bench.scaling], "o-", color="#8da0cb")
        scale.set_xticks(workers)
        scale.set_ylim(0, max(s.rate for s in bench.scaling) * 1.25)
    scale.set_xlabel("workers per stage")
    scale.set_ylabel("stored packets/s")
    scale.set_title(f"Services mode scaling ({bench.machine.cpus} CPUs)")
    fig.suptitle(f"meterseal bench deployments — {bench.machine.cpu}; {SIMULATED}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
