"""Plot one week of the consumption model: docs/img/load-model.png.

Usage: python scripts/plot_load_model.py [OUTPUT_PNG]

Three modelled households, one meter replaying the real UCI household, and the average of
1,000 modelled households against the plain BDEW H25 profile and the scaled UCI replay.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from meterseal.meter import load, profiles

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "img" / "load-model.png"
TZ = ZoneInfo("Europe/Berlin")
START = dt.datetime(2026, 1, 12, tzinfo=TZ)  # a Monday
INTERVALS = 7 * profiles.PER_DAY
SEED = 2026


def main(argv: list[str]) -> None:
    """Generate the week and write the PNG."""
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    first = profiles.first_interval(START)
    times = [
        dt.datetime.fromtimestamp((first + i) * profiles.INTERVAL, TZ).replace(tzinfo=None)
        for i in range(INTERVALS)
    ]
    kw = 4 / 1000  # Wh per 15 minutes -> mean kW

    fleet = load.Fleet(SEED)
    homes = fleet.energy(range(3), START, INTERVALS) * kw
    average = fleet.energy(range(1000), START, INTERVALS).mean(axis=0) * kw
    plain = profiles.bdew_energy("H25", START, INTERVALS, annual_kwh=3500) * kw
    replay = load.Fleet(SEED, mix={"UCI": 1.0})
    one_real = replay.energy([0], START, INTERVALS)[0] * kw
    sample = profiles.uci_sample().energy_wh
    to_3500 = 3500 / (sample.mean() * 365 * profiles.PER_DAY / 1000)  # the UCI house: ~12 MWh/yr
    real_average = replay.energy(range(200), START, INTERVALS).mean(axis=0) * kw * to_3500

    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    for i, series in enumerate(homes):
        household = fleet.household(i)
        label = f"meter {i}: {household.annual_kwh:,.0f} kWh/yr, {', '.join(household.appliances)}"
        axes[0].plot(times, series, lw=0.8, label=label)
    axes[0].set_title("Three modelled households (BDEW H25 + noise + appliance uses)")
    axes[1].plot(times, one_real, lw=0.8, color="tab:red", label="UCI household, replayed")
    axes[1].set_title("One meter replaying the real UCI trace (near Paris, 8 Jan - 4 Mar 2007)")
    axes[2].plot(times, average, lw=1.2, label="average of 1,000 modelled households")
    axes[2].plot(times, plain, lw=1.2, ls="--", color="black", label="plain BDEW H25, 3,500 kWh/yr")
    axes[2].plot(
        times, real_average, lw=1.0, color="tab:red", alpha=0.8,
        label="UCI replay, average of 200 meters, scaled to 3,500 kWh/yr",
    )  # fmt: skip
    axes[2].set_title("Averages")
    for ax in axes:
        ax.set_ylabel("mean power per 15 min (kW)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[2].xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    axes[2].set_xlabel("local time (Europe/Berlin), week of 12 January 2026")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    print(output)


if __name__ == "__main__":
    main(sys.argv)
