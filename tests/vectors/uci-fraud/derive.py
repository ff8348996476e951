"""Derive uci_26weeks.csv.gz (15-minute energy, voltage, current) from the one-minute trace.

Usage (from the repository root):
    python tests/vectors/uci-fraud/derive.py [SOURCE_CSV_GZ]
Default source: ../shared/data/uci_household_power_1min.csv.gz. The output is byte-for-byte
reproducible (gzip header without a timestamp). See SOURCE.md beside this file.
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[3] / "shared" / "data" / "uci_household_power_1min.csv.gz"
OUTPUT = HERE / "uci_26weeks.csv.gz"
FIRST = pd.Timestamp("2007-01-01 00:00")  # a Monday
DAYS = 182


def derive(source: Path) -> pd.DataFrame:
    """Aggregate 26 weeks of the one-minute trace to 15-minute readings."""
    raw = pd.read_csv(source, parse_dates=["date_time"], na_values=["?", ""])
    minutes = raw.set_index("date_time").loc[FIRST : FIRST + pd.Timedelta(days=DAYS, minutes=-1)]
    if len(minutes) != DAYS * 1440 or minutes.isna().to_numpy().any():
        raise SystemExit(f"window has {len(minutes)} of {DAYS * 1440} minutes or empty values")
    grouped = minutes.resample("15min")
    out = pd.DataFrame(
        {
            "energy_wh": (grouped["Global_active_power"].sum() * 1000.0 / 60.0)
            .round()
            .astype("int64"),
            "voltage_v": grouped["Voltage"].mean().round(1),
            "current_a": grouped["Global_intensity"].mean().round(2),
        }
    )
    out.index.name = "start"
    return out


def main() -> None:
    """Write the sample."""
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    text = io.StringIO()
    derive(source).to_csv(text, date_format="%Y-%m-%d %H:%M", lineterminator="\n")
    with OUTPUT.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.getvalue().encode())
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
