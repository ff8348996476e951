"""A long CSV read in chunks: a fleet's month without holding its text in memory.

`read_long_csv` parses the whole file with pandas (about 170 bytes a row: 30 GB for 65,000
customers x 30 days). This reader makes two passes over the file, a chunk of rows at a
time: the first finds the customers, the first and last instant and the reading interval (the
greatest common divisor of the instants' offsets: rows may come in any order);
the second adds each reading into its customer's local day and slot of an array made once
(8 bytes a slot, and one byte counting the readings of each). Energy columns only; a file
with phasor columns goes through `read_long_csv`. With `--tz auto` the first pass also sums
each customer's readings by UTC hour, what the zone's estimate rests on (`zone`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from meterseal.errors import ConfigurationError
from meterseal.fraud.data import DAY, Consumption, FraudDataError
from meterseal.fraud.zone import Estimate, from_hourly, hourly_sums
from meterseal.meter.theft import local_clock

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
CHUNK = 1_000_000  # rows parsed at once
ENERGY_ONLY = ("customer_id", "timestamp", "kwh")


def header(path: Path) -> tuple[str, ...]:
    """The file's column names (empty when it cannot be read: the full reader says why)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return tuple(c.strip() for c in f.readline().strip().split(","))
    except OSError:
        return ()


def _chunks(path: Path, columns: list[str], rows: int) -> Iterator[Any]:
    import pandas as pd

    try:
        yield from pd.read_csv(
            path,
            usecols=columns,
            dtype={"customer_id": str},
            chunksize=rows,
            skipinitialspace=True,
            index_col=False,
        )
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise FraudDataError(f"{path}: not a readable CSV ({exc})") from None


def _seconds(path: Path, raw: Any) -> I64:
    from meterseal.fraud.readers import _timestamps

    return _timestamps(path, raw)


def _clock(tz: str, stamps: I64) -> tuple[I64, I64]:
    try:
        return local_clock(tz, stamps)
    except ConfigurationError as exc:
        raise FraudDataError(str(exc)) from None


class _Hourly:
    """Each customer's energy and readings by UTC hour, gathered chunk by chunk (--tz auto)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.sums = np.zeros((1024, 24))
        self.counts = np.zeros((1024, 24))

    def add(self, customers: Any, stamps: I64, kwh: F64) -> None:
        """Add a chunk's readings."""
        import pandas as pd

        codes, names = pd.factorize(customers)
        rows = np.array([self.index.setdefault(n, len(self.index)) for n in names], np.int64)
        if len(self.index) > len(self.sums):
            grow = max(len(self.index), 2 * len(self.sums)) - len(self.sums)
            self.sums = np.vstack([self.sums, np.zeros((grow, 24))])
            self.counts = np.vstack([self.counts, np.zeros((grow, 24))])
        sums, counts = hourly_sums(np.asarray(codes, np.int64), stamps, kwh, len(names))
        self.sums[rows] += sums  # each customer once in `names`: no repeated rows
        self.counts[rows] += counts

    def estimate(self) -> Estimate:
        """The zone of the night trough (`zone.from_hourly`)."""
        n = len(self.index)
        return from_hourly(self.sums[:n], self.counts[:n])


def read_long_csv_streaming(
    path: Path,
    *,
    tz: str,
    rows: int = CHUNK,
    on_estimate: Callable[[Estimate], object] = lambda _e: None,
) -> Consumption:
    """A long CSV of `customer_id, timestamp, kwh` as consumption by local day of `tz`;
    tz "auto": a fixed offset estimated from the night trough in the first pass (`zone`),
    told to `on_estimate`."""
    from meterseal.fraud.readers import AUTO, _numbers

    names: set[str] = set()
    first, last = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    step = 0  # the readings' common interval: the gcd of every instant's offset
    origin: int | None = None
    hourly = _Hourly() if tz == AUTO else None
    columns = ["customer_id", "timestamp"] + (["kwh"] if hourly else [])
    for chunk in _chunks(path, columns, rows):
        if chunk["customer_id"].isna().any():
            raise FraudDataError(f"{path}: empty customer_id")
        names.update(chunk["customer_id"].unique().tolist())
        stamps = _seconds(path, chunk["timestamp"])
        first, last = min(first, int(stamps.min())), max(last, int(stamps.max()))
        origin = int(stamps[0]) if origin is None else origin
        step = int(np.gcd.reduce(np.abs(stamps - origin), initial=step))
        if hourly is not None:
            kwh = _numbers(path, chunk.reset_index(drop=True), "kwh")
            hourly.add(chunk["customer_id"].to_numpy(dtype=object), stamps, kwh)
    if not names:
        raise FraudDataError(f"{path}: no readings")
    if hourly is not None:
        found = hourly.estimate()
        on_estimate(found)
        tz = found.zone
    step = step or 900
    if step < 60 or DAY % step:
        raise FraudDataError(f"{path}: reading interval of {step} s does not divide a day")
    slots = DAY // step
    days_of, _ = _clock(tz, np.array([first, last], np.int64))
    day0, days = int(days_of[0]), int(days_of[1] - days_of[0]) + 1
    ids = sorted(names)
    # How many instants of the grid fall on each local slot: 2 in a repeated hour.
    timeline = np.arange(first - first % step, last + 1, step, dtype=np.int64)
    t_day, t_second = _clock(tz, timeline)
    expected = np.bincount((t_day - day0) * slots + t_second // step, minlength=days * slots)
    energy = np.zeros(len(ids) * days * slots)
    count = np.zeros(len(ids) * days * slots, np.uint8)  # readings, empty ones too
    filled = np.zeros(len(ids) * days * slots, np.uint8)  # readings with a value
    import pandas as pd

    for chunk in _chunks(path, ["customer_id", "timestamp", "kwh"], rows):
        who = pd.Categorical(chunk["customer_id"], categories=ids).codes.astype(np.int64)
        stamps = _seconds(path, chunk["timestamp"])
        if np.any(stamps % step):
            bad = int(np.argmax(stamps % step != 0))
            raise FraudDataError(
                f"reading of {chunk['customer_id'].iloc[bad]!r} at {stamps[bad]} is off the "
                f"{step}-s grid"
            )
        kwh = _numbers(path, chunk.reset_index(drop=True), "kwh")
        day, second = _clock(tz, stamps)
        cell = who * (days * slots) + (day - day0) * slots + second // step
        present = ~np.isnan(kwh)
        np.add.at(energy, cell[present], kwh[present])
        np.add.at(filled, cell[present], 1)
        np.add.at(count, cell, 1)
    over = count.reshape(len(ids), days * slots) > expected[None, :]
    if over.any():
        c, s = (int(v[0]) for v in np.nonzero(over))
        raise FraudDataError(
            f"two readings of {ids[c]!r} at one instant (local day {s // slots}, slot {s % slots})"
        )
    del count
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(energy, filled, out=energy, where=filled > 0)  # a repeated hour: the mean
    energy[filled == 0] = np.nan
    return Consumption(
        tuple(ids),
        dt.date(1970, 1, 1) + dt.timedelta(days=day0),
        energy.reshape(len(ids), days, slots),
        tz=tz,
    )
