"""Turn the UCI household power data (1-minute kW) into meterseal's import CSV (15-minute kWh).

The source: "Individual household electric power consumption" (UCI Machine Learning
Repository, Hebrail & Berard, CC BY 4.0), one house near Paris, a reading a minute of the mean
active power (kW), local time without an offset. A 15-minute slot's energy is the sum of its
minutes' power / 60 (kWh), written with 3 decimals (whole Wh); a slot missing any minute is left
out (a gap billing will see). Times stay local, so the import needs `--tz Europe/Paris`.

    python scripts/uci_household_csv.py uci_household_power_1min.csv.gz \
        "2010-10-01 02:00" "2010-10-31 02:00" MTR-000001 > household-2010-10.csv
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import sys
from decimal import ROUND_HALF_EVEN, Decimal

SLOT = dt.timedelta(minutes=15)


def main(source: str, first: str, end: str, meter_id: str) -> None:
    """Write the CSV of [first, end) (local times) for `meter_id` on stdout."""
    start, stop = dt.datetime.fromisoformat(first), dt.datetime.fromisoformat(end)
    slots: dict[dt.datetime, list[Decimal]] = {}
    with gzip.open(source, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            moment = dt.datetime.fromisoformat(row["date_time"])
            power = row["Global_active_power"].strip()
            if not start <= moment < stop or power in ("", "?"):
                continue
            slot = moment - dt.timedelta(minutes=moment.minute % 15, seconds=moment.second)
            slots.setdefault(slot, []).append(Decimal(power))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["meter", "start", "duration", "kwh"])
    for slot in sorted(slots):
        minutes = slots[slot]
        if len(minutes) != 15:
            continue
        kwh = (sum(minutes) / 60).quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
        out.writerow([meter_id, slot.strftime("%Y-%m-%d %H:%M:%S"), 900, kwh])


if __name__ == "__main__":
    main(*sys.argv[1:])
