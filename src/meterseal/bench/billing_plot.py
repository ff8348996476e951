"""The `bench billing` figure: each bill's phases against 20 ms, each audit against bare verify."""

from __future__ import annotations

from pathlib import Path

from meterseal.bench.billing import AUDIT_TARGET, BILL_TARGET, BillingBench
from meterseal.billing.service import PHASES


def plot_billing(bench: BillingBench, path: Path) -> Path:
    """Stacked phases per bill beside the 20 ms line; audit against bare verification."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = bench.rounds
    labels = [f"{r.store}\n{r.customers:,} cust." for r in rounds]
    x = list(range(len(rounds)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    bottom = [0.0] * len(rounds)
    for phase in PHASES:
        heights = [r.phase_mean(phase) * 1e3 for r in rounds]
        left.bar(x, heights, 0.6, bottom=bottom, label=phase)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    left.plot(x, [r.percentile(50) * 1e3 for r in rounds], "kD", markersize=5, label="p50")
    left.axhline(
        BILL_TARGET * 1e3, color="#d62728", linestyle="--", linewidth=1.2, label="target (p50)"
    )
    tallest = max([*bottom, *(r.percentile(50) * 1e3 for r in rounds), BILL_TARGET * 1e3])
    left.set_ylim(0, tallest * 1.45)  # room for the legend above the bars
    left.set_xticks(x, labels)
    left.set_ylabel("ms per bill (mean by phase)")
    left.set_title(f"Bill of {bench.intervals:,} packets: query → recorded")
    left.legend(fontsize=8, ncol=4, loc="upper left")
    bare = [r.bare_p50 * 1e3 for r in rounds]
    audit = [r.audit_p50 * 1e3 for r in rounds]
    right.bar([i - 0.2 for i in x], bare, 0.4, label="bare signature verification", color="#8da0cb")
    right.bar([i + 0.2 for i in x], audit, 0.4, label="whole audit", color="#fc8d62")
    right.scatter(
        [i + 0.2 for i in x],
        [b * AUDIT_TARGET for b in bare],
        marker="_",
        s=400,
        color="#d62728",
        label=f"{AUDIT_TARGET}x bare (target)",
    )
    for i, r in enumerate(rounds):
        right.annotate(f"{r.ratio:.2f}x", (i + 0.2, audit[i]), ha="center", va="bottom", fontsize=8)
    right.set_ylim(0, max([*audit, *(b * AUDIT_TARGET for b in bare)]) * 1.35)
    right.set_xticks(x, labels)
    right.set_ylabel("ms per bill (p50)")
    right.set_title(f"Audit of one bill vs verifying its {bench.intervals:,} signatures")
    right.legend(fontsize=8, ncol=2, loc="upper left")
    fig.suptitle(f"meterseal bench billing — {bench.machine.cpu}, {bench.suite}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
