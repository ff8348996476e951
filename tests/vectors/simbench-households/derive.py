"""Derive simbench_households_2016.csv.gz from SimBench's load profiles (one year, 15 min).

Usage (from the repository root):
    python tests/vectors/simbench-households/derive.py SIMBENCH_WHEEL_OR_LOADPROFILE_CSV
The source is `simbench/networks/1-complete_data-mixed-all-0-sw/LoadProfile.csv` inside the
PyPI wheel simbench 1.6.3 (`pip download --no-deps simbench==1.6.3`); the wheel itself or
the extracted CSV may be given. The output keeps the source's values as written (text),
only the five household columns and the time; it is byte-for-byte reproducible (gzip
header without a timestamp). See SOURCE.md beside this file.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "simbench_households_2016.csv.gz"
MEMBER = "simbench/networks/1-complete_data-mixed-all-0-sw/LoadProfile.csv"
# H0-H is left out: its days repeat week to week (correlation 0.96 against 0.2-0.5 for the
# others) and its daily energy is flat all year: not one household's behaviour.
HOUSEHOLDS = ("H0-A", "H0-B", "H0-C", "H0-G", "H0-L")


def _text(source: Path) -> str:
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(MEMBER).decode("utf-8")
    return source.read_text(encoding="utf-8")


def main() -> None:
    """Write the subset."""
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    rows = csv.reader(io.StringIO(_text(Path(sys.argv[1]))), delimiter=";")
    header = next(rows)
    keep = [header.index("time")] + [header.index(f"{h}_pload") for h in HOUSEHOLDS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("time", *HOUSEHOLDS))
    count = 0
    for row in rows:
        writer.writerow([row[i] for i in keep])
        count += 1
    if count != 366 * 96:
        raise SystemExit(f"expected 35,136 rows (2016 at 15 min), found {count}")
    with OUTPUT.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(out.getvalue().encode())
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
