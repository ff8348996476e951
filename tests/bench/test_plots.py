"""The bench plots on figures of a run made up here: titles state the run's numbers, and
legends and labels sit clear of what they label (checked on the drawn figure's boxes)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from meterseal.bench.dissemination import (
    AggregationPoint,
    DisseminationBench,
    DisseminationPlan,
    Phase,
)
from meterseal.bench.dissemination_report import BURST_WINDOW, dissemination_figure
from meterseal.bench.fraud import RECALL_TARGET, ScaleResult, fraud_figure
from meterseal.bench.fraud_quality import (
    PATTERN_TARGET,
    SourceResult,
    plot_sources,
    sources_figure,
)
from meterseal.bench.fraud_sources import SOURCES
from meterseal.bench.integrity import MODES, IntegrityBench, ModeResult, integrity_figure
from meterseal.bench.timing import Machine, Timing
from meterseal.fraud.evaluate import Comparison
from meterseal.fraud.metrics import Evaluation

# MS_PLOTS_DIR=DIR keeps the PNGs, to look at them.
KEEP = os.environ.get("MS_PLOTS_DIR")


def _save(fig: Figure, name: str, tmp_path: Path) -> None:
    """Draw the figure (so every box has its final place) and write it as a PNG."""
    folder = Path(KEEP or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / name, dpi=100)


def _texts(fig: Figure) -> list[str]:
    return [a.get_text() for a in fig.findobj() if isinstance(a, Text)]


def _bars(fig: Figure) -> list[Bbox]:
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    return [p.get_window_extent(renderer) for ax in fig.axes for p in ax.patches]


def _comparison(customers: int, thieves: int) -> Comparison:
    patterns = ("constant_mean", "reversed", "zeroed")
    rows = tuple(
        Evaluation(name, auc, {100: auc, 200: auc}, dict.fromkeys(patterns, auc), thieves)
        for name, auc in (
            ("SOM correlation (seed)", 0.72),
            ("meterseal", 0.99),
            ("meterseal (supervised)", 0.995),
            ("IsolationForest", 0.65),
            ("LocalOutlierFactor", 0.46),
        )
    )
    return Comparison("labelled", customers, thieves, rows)


def test_the_fraud_legend_covers_no_bar_and_names_the_target(tmp_path: Path) -> None:
    scale = ScaleResult(1_234, 17, 1.0, 2.0, 3.0, 4.0, 567.0)
    fig = fraud_figure(_comparison(3_210, 321), scale)
    _save(fig, "fraud-bench.png", tmp_path)
    title = fig.get_suptitle()
    assert "3,210 labelled customers (321 thieves)" in title
    assert "ranking 1,234 x 17 days: 9 s, 567 MiB peak" in title
    assert fig.axes[1].get_title() == "Recall per pattern at a cut of 321 (the thieves)"
    assert not any(ax.get_legend() for ax in fig.axes)  # one legend, the figure's
    (legend,) = fig.legends
    assert f"recall target ({RECALL_TARGET:.0%})" in [t.get_text() for t in legend.get_texts()]
    box = legend.get_window_extent()
    assert not [b for b in _bars(fig) if b.height > 0 and b.overlaps(box)]


def _sources() -> list[SourceResult]:
    """The four sources, each method's recall a step apart per pattern (no supervised row)."""
    patterns = ("constant", "gradual drift", "reversed")
    methods = (
        ("SOM correlation (seed)", 0.7),
        ("meterseal", 0.9),
        ("IsolationForest", 0.6),
        ("LocalOutlierFactor", 0.5),
    )
    out = []
    for k, spec in enumerate(SOURCES):
        rows = tuple(
            Evaluation(
                name,
                auc + k / 100,
                {50: auc, 100: auc - k / 100},
                {p: auc - j / 10 for j, p in enumerate(patterns)},
                40 + k,
            )
            for name, auc in methods
        )
        out.append(SourceResult(spec, Comparison(spec.name, 400 + k, 40 + k, rows)))
    return out


def _colours(fig: Figure, panel: int) -> dict[str, str]:
    """Each method's bar colour on one panel, by its label."""
    bars = [c for c in fig.axes[panel].containers if isinstance(c, BarContainer)]
    return {str(c.get_label()): to_hex(c.patches[0].get_facecolor()) for c in bars}


def test_the_sources_figure_has_a_panel_per_source_with_the_target(tmp_path: Path) -> None:
    results = _sources()
    path = plot_sources(results, tmp_path / "out" / "fraud-sources.png")
    assert path == tmp_path / "out" / "fraud-sources.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    fig = sources_figure(results)
    _save(fig, "fraud-sources.png", tmp_path)
    assert len(fig.axes) == 5  # an odd count: no empty sixth panel
    specs = [ax.get_subplotspec() for ax in fig.axes]
    assert [s.get_geometry()[:2] for s in specs if s is not None] == [(3, 2)] * 5
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("uci-tuning (tuning): meterseal AUC 0.900, MAP@100 0.900\n")
    assert "400 customers, cut 40 (the thieves)" in titles[0]
    assert titles[1].startswith("citylearn-tuning (tuning): meterseal AUC 0.910, MAP@100 0.890\n")
    assert titles[4].startswith("simbench-households: meterseal AUC 0.940, MAP@100 0.860\n")
    assert sum("(tuning)" in t for t in titles) == 2
    for ax in fig.axes:
        assert len(ax.patches) == 4 * 3  # methods x patterns
        (line,) = ax.get_lines()
        assert line.get_linestyle() == "--"
        assert np.asarray(line.get_ydata())[0] == PATTERN_TARGET
        # the target line is no method's colour (it was IsolationForest's red)
        assert to_hex(line.get_color()) not in _colours(fig, fig.axes.index(ax)).values()
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "constant",
            "gradual drift",
            "reversed",
        ]
    assert not any(ax.get_legend() for ax in fig.axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[-1] == f"recall target ({PATTERN_TARGET:.0%})"
    assert not [b for b in _bars(fig) if b.height > 0 and b.overlaps(legend.get_window_extent())]
    # a method has the colour it has in the simulator's figure, with or without the
    # supervised row before the baselines
    simulator = _colours(fraud_figure(_comparison(3_210, 321), None), 1)
    assert all(simulator[m] == c for m, c in _colours(fig, 0).items())
    assert len(sources_figure(results[:3]).axes) == 3  # no empty fourth panel


def _integrity(bare: float, ratios: tuple[float, ...]) -> IntegrityBench:
    modes = {
        name: ModeResult(name, (bare * r, bare * r, bare * r), 5, 100, 2)
        for name, r in zip(MODES, ratios, strict=True)
    }
    return IntegrityBench(4_321, 500, modes, Timing((4.2e-3,), 1), Timing((1.4e-4,), 1))


def test_the_integrity_target_line_is_labelled_and_no_ratio_sits_on_it(tmp_path: Path) -> None:
    # 1.05x and 1.08x: bars just under the 1.1x line, where the labels used to cross it.
    bench = _integrity(1.85, (1.0, 1.05, 1.08, 5.01))
    fig = integrity_figure(bench)
    _save(fig, "bench-integrity.png", tmp_path)
    left = fig.axes[0]
    assert left.get_title().startswith("meter workload, 4,321 intervals, 3 repeats")
    texts = {t.get_text(): t for t in left.texts}
    assert "target: 1.1x bare (2,035 ms)" in texts
    (line,) = left.get_lines()
    line_y = left.transData.transform((0.0, float(np.asarray(line.get_ydata())[0])))[1]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for label in ("1.00x", "1.05x", "1.08x", "5.01x"):
        box = texts[label].get_window_extent(renderer)
        assert not box.y0 <= line_y <= box.y1, label
    named = texts["target: 1.1x bare (2,035 ms)"].get_window_extent(renderer)
    assert named.y0 >= line_y  # above the line it names
    assert not [b for b in _bars(fig) if b.overlaps(named)]


def _phase(name: str, sent: int, seconds: float) -> Phase:
    times = [i * seconds / 50 for i in range(51)]
    latency = {"mean": 2.0, "p50": 2.0, "p99": 3.0}
    return Phase(name, 0.0, sent, sent, seconds, latency, 0.1, 0.1, (times, [2.0] * 51))


def _dissemination(burst_seconds: float) -> DisseminationBench:
    plan = DisseminationPlan(subscriptions=2_345)
    machine = Machine("linux", "a CPU", 2, None, "CPython 3.11", "44", "OpenSSL 3", (0, 0, 0))
    return DisseminationBench(
        plan,
        machine,
        isolated=_phase("isolated", 7, 1.0),
        burst=_phase("burst", 54_321, burst_seconds),
        rates=[_phase("rate", 500, 1.0), _phase("rate", 1_000, 1.0)],
        aggregation=[AggregationPoint(n, 1e-6, 1e-4, 1e-4, 1e-2, 1e-1) for n in (10, 20)],
    )


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(8.4, "whole burst"), (BURST_WINDOW + 5, f"first {BURST_WINDOW:.0f} s")],
)
def test_the_dissemination_titles_state_the_run_s_sizes(
    tmp_path: Path, seconds: float, shown: str
) -> None:
    fig = dissemination_figure(_dissemination(seconds))
    _save(fig, f"bench-dissemination-{seconds:.0f}.png", tmp_path)
    iso, burst = fig.axes[0], fig.axes[1]
    assert burst.get_title() == (
        f"Burst of 54,321: {shown} (paper fig. 4); drained in {seconds:.1f} s"
    )
    assert iso.get_title() == "Latency of 7 isolated publications (paper fig. 3)"
    assert [t.get_text() for t in iso.get_xticklabels()] == ["isolated (NATS, 2,345 subscriptions)"]
    assert not [t for t in _texts(fig) if "10k" in t or "10,000" in t]
