"""Derive the shipped UCI sample (8 winter weeks at 15 minutes) from the one-minute trace.

Usage: python scripts/derive_uci_sample.py [SOURCE_CSV_GZ] [OUTPUT_CSV_GZ]

Defaults: ../shared/data/uci_household_power_1min.csv.gz ->
src/meterseal/meter/data/uci_sample.csv.gz. The output is byte-for-byte reproducible
(gzip header without a timestamp). See src/meterseal/meter/data/SOURCE.md.
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "uci_household_power_1min.csv.gz"
DEFAULT_OUTPUT = ROOT / "src" / "meterseal" / "meter" / "data" / "uci_sample.csv.gz"

# Monday 2007-01-08 00:00 .. Sunday 2007-03-04 23:59 local (Paris) time: 56 whole days,
# no daylight-saving change, clear of the long outages in the original UCI file.
FIRST = pd.Timestamp("2007-01-08 00:00")
DAYS = 56
MINUTES_PER_INTERVAL = 15


def derive(source: Path) -> pd.DataFrame:
    """Aggregate the one-minute trace to 15-minute energy and mean electrical values."""
    raw = pd.read_csv(source, parse_dates=["date_time"], na_values=["?", ""])
    raw = raw.set_index("date_time")
    last = FIRST + pd.Timedelta(days=DAYS) - pd.Timedelta(minutes=1)
    minutes = raw.loc[FIRST:last]
    expected = DAYS * 24 * 60
    if len(minutes) != expected or minutes.isna().to_numpy().any():
        raise SystemExit(f"window has {len(minutes)} of {expected} minutes or empty values")
    grouped = minutes.resample(f"{MINUTES_PER_INTERVAL}min")
    active_kw = grouped["Global_active_power"]
    out = pd.DataFrame(
        {
            # kW for one minute = 1000/60 Wh
            "energy_wh": (active_kw.sum() * 1000.0 / 60.0).round().astype("int64"),
            "voltage_v": grouped["Voltage"].mean().round(2),
            "current_a": grouped["Global_intensity"].mean().round(2),
            "reactive_var": (grouped["Global_reactive_power"].mean() * 1000.0).round(1),
            "max_power_w": (active_kw.max() * 1000.0).round().astype("int64"),
        }
    )
    out.index.name = "start"
    return out


def write(frame: pd.DataFrame, output: Path) -> None:
    """Write CSV, gzip-compressed with a fixed header (mtime 0) so reruns are identical."""
    text = io.StringIO()
    frame.to_csv(text, date_format="%Y-%m-%d %H:%M", lineterminator="\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.getvalue().encode("ascii"))


def main(argv: list[str]) -> None:
    """Entry point: derive and write the sample, then print a short summary."""
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    output = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUTPUT
    frame = derive(source)
    write(frame, output)
    print(
        f"{output}: {len(frame)} rows, {frame['energy_wh'].sum() / 1000:.1f} kWh, "
        f"{output.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main(sys.argv)
