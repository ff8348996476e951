"""Derive citylearn_2022_homes.csv.gz from CityLearn 2.0.0's 2022 challenge data (hourly).

Usage (from the repository root):
    python tests/vectors/citylearn-2022/derive.py CITYLEARN_WHEEL
The source is `citylearn/data/citylearn_challenge_2022_phase_all/Building_<n>.csv` inside
the PyPI wheel CityLearn 2.0.0 (`pip download --no-deps citylearn==2.0.0`), column
`Equipment Electric Power [kWh]` of each home. The output keeps the values as written
(text), one column a home and a local hour-starting time; it is byte-for-byte reproducible
(gzip header without a timestamp). See SOURCE.md beside this file.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "citylearn_2022_homes.csv.gz"
FOLDER = "citylearn/data/citylearn_challenge_2022_phase_all"
COLUMN = "Equipment Electric Power [kWh]"
# Homes 12 and 15 are left out: nearly half of their hours repeat the hour before exactly
# (0.45, against at most 0.04 for the others): filled gaps, not a household's behaviour.
HOMES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 16, 17)
# The files' first row is hour 24 (23:00-24:00) of Sunday 2016-07-31 (day type 7, the
# next day type 1 = Monday 2016-08-01); the last is hour 23 of 2017-07-31. Kept: the 364
# whole days from 2016-08-01.
FIRST_DAY = dt.date(2016, 8, 1)
DAYS = 364


def main() -> None:
    """Write the subset."""
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    columns = []
    with zipfile.ZipFile(Path(sys.argv[1])) as wheel:
        for home in HOMES:
            text = wheel.read(f"{FOLDER}/Building_{home}.csv").decode("utf-8")
            rows = list(csv.DictReader(io.StringIO(text)))
            if len(rows) != 8760 or (rows[1]["Month"], rows[1]["Hour"]) != ("8.0", "1.0"):
                raise SystemExit(f"Building_{home}.csv is not the 2022 set's year")
            columns.append([r[COLUMN] for r in rows[1 : 1 + DAYS * 24]])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("time", *(f"home_{h}" for h in HOMES)))
    start = dt.datetime.combine(FIRST_DAY, dt.time())
    for i in range(DAYS * 24):
        stamp = (start + dt.timedelta(hours=i)).strftime("%Y-%m-%d %H:%M")
        writer.writerow((stamp, *(c[i] for c in columns)))
    with OUTPUT.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(out.getvalue().encode())
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
