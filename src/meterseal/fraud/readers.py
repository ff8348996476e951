"""Where the fraud job's data comes from: a long CSV, the SGCC wide CSV, or the store.

* Long CSV: one reading a row, columns `customer_id, timestamp, kwh`, optionally phasor
  means per phase `voltage_l1..3` (V), `current_l1..3` (A), `power_l1..3` (W), or
  `voltage`, `current`, `power` for a single phase. Timestamps: ISO 8601 (naive = UTC) or
  Unix seconds, the start of the interval. Empty `kwh` cells are missing readings. Days are
  cut in the meters' time zone (`tz`, an IANA name, or "auto": a fixed offset estimated
  from the customers' night trough, reported to the caller; the commands require one).
* SGCC (State Grid Corporation of China) layout, as used throughout the electricity-theft
  literature: `CONS_NO, FLAG, <date>, <date>, ...`, one row a customer, daily kWh, FLAG 1 for
  a thief; without the FLAG column the same layout is data to rank. Dates may come in any
  order; days absent from the header, and empty cells, are missing. The days are grouped
  in weeks, the window the seed's correlation works on.
* The store: each customer's meters (`BillStore.customer_meters`), their signed originals
  for the period (`Store.originals`), summed per interval; phasor reports are decoded from
  the signed originals, for whole local days of `tz`. The job sees per-customer data: it runs
  as a trusted job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from meterseal.errors import ConfigurationError
from meterseal.fraud.data import Consumption, FraudDataError, UnknownCustomer, from_arrays
from meterseal.fraud.zone import Estimate, estimate
from meterseal.meter.theft import local_midnight

if TYPE_CHECKING:
    from meterseal.storage.bill_store import BillStore

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
PHASES = ("l1", "l2", "l3")
AUTO = "auto"  # tz: estimate a fixed offset from the readings (`zone`)


def _csv(path: Path, **options: Any) -> Any:
    """pandas.read_csv with its errors translated into one `FraudDataError`.

    A row with more fields than the header is an error (pandas would otherwise take the
    extra fields for an index, or drop them with a warning).
    """
    import warnings

    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False, **options)
    except pd.errors.ParserWarning as exc:
        raise FraudDataError(f"{path}: not a readable CSV (ragged rows: {exc})") from None
    except FileNotFoundError:
        raise FraudDataError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FraudDataError(f"{path}: not a readable CSV ({exc})") from None
    except ValueError as exc:
        raise FraudDataError(f"{path}: {exc}") from None


def _numbers(path: Path, frame: Any, column: str) -> F64:
    """A column as floats; a cell that is not a number is an error naming its line."""
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise FraudDataError(
            f"{path}: line {row + 2}: {column} {frame[column].iloc[row]!r} is not a number"
        )
    return np.asarray(values.to_numpy(np.float64))


def _timestamps(path: Path, raw: Any) -> I64:
    """Unix seconds from ISO 8601 text (naive = UTC) or from numbers."""
    import pandas as pd

    def unreadable(bad: Any) -> FraudDataError:
        row = int(np.argmax(np.asarray(bad)))
        return FraudDataError(f"{path}: line {row + 2}: timestamp {raw.iloc[row]!r} unreadable")

    # A column of numbers arrives parsed; text is tried as ISO 8601 first: coercing a
    # million ISO strings to numbers only to fail costs seven seconds (30 minutes of a
    # 65,000-customer month, read twice).
    if pd.api.types.is_numeric_dtype(raw):
        if raw.isna().any():
            raise unreadable(raw.isna())
        return np.asarray(raw.to_numpy(np.int64))
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    failed = parsed.isna().to_numpy()
    if failed.all():  # Unix seconds read as text
        numeric = pd.to_numeric(raw, errors="coerce")
        if numeric.isna().any():
            raise unreadable(numeric.isna())
        return np.asarray(numeric.to_numpy(np.int64))
    if failed.any():
        raise unreadable(failed)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return np.asarray(seconds.to_numpy(np.int64))


def _phase_columns(frame: Any, quantity: str) -> list[str]:
    names = [f"{quantity}_{p}" for p in PHASES if f"{quantity}_{p}" in frame.columns]
    return names or ([quantity] if quantity in frame.columns else [])


def read_long_csv(
    path: Path,
    regions: dict[str, str] | None = None,
    *,
    tz: str,
    on_estimate: Callable[[Estimate], object] = lambda _e: None,
) -> Consumption:
    """A long CSV (see the module doc) as consumption by customer and local day of `tz`;
    tz "auto": a fixed offset estimated from the night trough (`zone`), told to
    `on_estimate`."""
    frame = _csv(path, dtype={"customer_id": str}, skipinitialspace=True)
    missing = {"customer_id", "timestamp", "kwh"} - set(frame.columns)
    if missing:
        raise FraudDataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    if frame.empty:
        raise FraudDataError(f"{path}: no readings")
    if frame["customer_id"].isna().any():
        row = int(np.argmax(frame["customer_id"].isna().to_numpy()))
        raise FraudDataError(f"{path}: line {row + 2}: empty customer_id")
    phasor: dict[str, F64 | None] = {}
    for quantity in ("voltage", "current", "power"):
        columns = _phase_columns(frame, quantity)
        phasor[quantity] = (
            np.stack([_numbers(path, frame, c) for c in columns], 1) if columns else None
        )
    stamps = _timestamps(path, frame["timestamp"])
    kwh = _numbers(path, frame, "kwh")
    if tz == AUTO:
        _, who = np.unique(frame["customer_id"].to_numpy(dtype=object), return_inverse=True)
        found = estimate(np.asarray(who, np.int64), stamps, kwh)
        on_estimate(found)
        tz = found.zone
    try:
        return from_arrays(
            frame["customer_id"].tolist(),
            stamps,
            kwh,
            voltage=phasor["voltage"],
            current=phasor["current"],
            power_w=phasor["power"],
            regions=regions,
            tz=tz,
        )
    except FraudDataError as exc:
        raise FraudDataError(f"{path}: {exc}") from None


def read_sgcc(path: Path) -> tuple[Consumption, dict[str, bool] | None]:
    """An SGCC-layout CSV: consumption by customer and week of days, and the FLAG labels
    (None when the file has no FLAG column: data to rank, not to evaluate on)."""
    import pandas as pd

    frame = _csv(path, dtype={"CONS_NO": str})
    if "CONS_NO" not in frame.columns:
        raise FraudDataError(f"{path}: an SGCC file starts with the columns CONS_NO[, FLAG]")
    labelled = "FLAG" in frame.columns
    day_columns = [c for c in frame.columns if c not in ("CONS_NO", "FLAG")]
    dates = pd.to_datetime(pd.Series(day_columns), errors="coerce")
    if dates.isna().any() or not len(dates):
        bad = [c for c, d in zip(day_columns, dates, strict=False) if pd.isna(d)]
        raise FraudDataError(f"{path}: column(s) {bad[:3]} are not dates")
    if frame["CONS_NO"].duplicated().any():
        raise FraudDataError(
            f"{path}: customer {frame['CONS_NO'][frame['CONS_NO'].duplicated()].iloc[0]!r} twice"
        )
    flags = _numbers(path, frame, "FLAG") if labelled else np.zeros(len(frame))
    if not np.isin(flags, (0, 1)).all():
        raise FraudDataError(f"{path}: FLAG must be 0 or 1")
    days = np.asarray(dates.dt.date.map(lambda d: d.toordinal()).to_numpy(np.int64))
    first = int(days.min())
    span = int(days.max()) - first + 1
    weeks = -(-span // 7)
    energy = np.full((len(frame), weeks * 7), np.nan)
    values = np.column_stack([_numbers(path, frame, c) for c in day_columns])
    energy[:, days - first] = values
    customers = tuple(frame["CONS_NO"].astype(str))
    data = Consumption(
        customers,
        dt.date.fromordinal(first),
        energy.reshape(len(frame), weeks, 7),
        period_days=7,
    )
    if not labelled:
        return data, None
    return data, {c: bool(f) for c, f in zip(customers, flags.tolist(), strict=True)}


def read_labels(path: Path) -> dict[str, bool]:
    """Inspection labels: a CSV with `customer_id` and `thief` (1/0, true/false)."""
    frame = _csv(path, dtype={"customer_id": str, "thief": str})
    if {"customer_id", "thief"} - set(frame.columns):
        raise FraudDataError(f"{path}: a labels file has the columns customer_id, thief")
    truth = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    out = {}
    pairs = zip(frame["customer_id"], frame["thief"], strict=True)
    for line, (customer, value) in enumerate(pairs, 2):
        flag = truth.get(str(value).strip().lower())
        if flag is None:
            raise FraudDataError(f"{path}: line {line}: thief {value!r} is not 1/0")
        out[str(customer)] = flag
    return out


def read_patterns(path: Path) -> dict[str, str]:
    """The optional `pattern` column of a labels file (what `fraud simulate` writes)."""
    frame = _csv(path, dtype=str)
    if "pattern" not in frame.columns or "customer_id" not in frame.columns:
        return {}
    pairs = zip(frame["customer_id"], frame["pattern"].fillna(""), strict=True)
    return {str(c): str(p) for c, p in pairs}


def read_store(
    bills: BillStore,
    first_day: dt.date,
    days: int,
    *,
    customers: Sequence[str] | None = None,
    with_phasor: bool = True,
    tz: str,
    progress: Callable[[int], object] = lambda _n: None,
) -> Consumption:
    """Customers' stored readings for `days` local days of `tz` from `first_day`."""
    from meterseal.crypto import cose
    from meterseal.crypto.reading_codec import decode_reading
    from meterseal.errors import MetersealError

    everyone = bills.customers()
    wanted = sorted(everyone) if customers is None else list(customers)
    for name in wanted:
        if name not in everyone:
            raise UnknownCustomer(f"no customer {name!r} in the store")
    if not wanted:
        raise FraudDataError("the store has no customers")
    day = (first_day - dt.date(1970, 1, 1)).days
    try:
        start, end = local_midnight(tz, day), local_midnight(tz, day + days)
    except ConfigurationError as exc:
        raise FraudDataError(str(exc)) from None
    ids: list[str] = []
    stamps: list[int] = []
    kwh: list[float] = []
    volts: list[list[float]] = []
    amps: list[list[float]] = []
    watts: list[list[float]] = []
    nan3 = [np.nan] * 3
    for name in wanted:
        for meter in everyone[name]:
            for row in bills.store.originals(meter, start, end):
                ids.append(name)
                stamps.append(row.timestamp)
                kwh.append(row.energy_wh / 1000.0)
                report = None
                if with_phasor:
                    try:
                        report = decode_reading(cose.parse_sign1(row.signed_original).payload)
                    except MetersealError:
                        report = None
                phases = report.phasor.phases if report and report.phasor else ()
                volts.append([p.voltage for p in phases] + nan3[len(phases) :])
                amps.append([p.current for p in phases] + nan3[len(phases) :])
                watts.append([p.active_power for p in phases] + nan3[len(phases) :])
        progress(1)
    if not ids:
        raise FraudDataError(f"no readings stored from {first_day} for {days} days")
    return _summed(ids, stamps, kwh, volts, amps, watts, with_phasor and bool(watts), tz)


def _summed(
    ids: list[str],
    stamps: list[int],
    kwh: list[float],
    volts: list[list[float]],
    amps: list[list[float]],
    watts: list[list[float]],
    with_phasor: bool,
    tz: str,
) -> Consumption:
    """Readings of several meters of one customer in the same interval added together."""
    import pandas as pd

    frame = pd.DataFrame({"customer": ids, "timestamp": stamps, "kwh": kwh})
    phasor = np.asarray(amps, np.float64)
    has_phasor = with_phasor and not np.isnan(phasor).all()
    if has_phasor:
        for k in range(3):
            frame[f"v{k}"] = np.asarray(volts, np.float64)[:, k]
            frame[f"i{k}"] = phasor[:, k]
            frame[f"p{k}"] = np.asarray(watts, np.float64)[:, k]
    grouped = frame.groupby(["customer", "timestamp"], sort=True)
    summed = grouped.sum(min_count=1).reset_index()
    if has_phasor:
        mean_v = grouped[[f"v{k}" for k in range(3)]].mean().reset_index(drop=True)
        for k in range(3):
            summed[f"v{k}"] = mean_v[f"v{k}"]
    cols = range(3)
    return from_arrays(
        summed["customer"].tolist(),
        summed["timestamp"].to_numpy(np.int64),
        summed["kwh"].to_numpy(np.float64),
        voltage=summed[[f"v{k}" for k in cols]].to_numpy() if has_phasor else None,
        current=summed[[f"i{k}" for k in cols]].to_numpy() if has_phasor else None,
        power_w=summed[[f"p{k}" for k in cols]].to_numpy() if has_phasor else None,
        tz=tz,
    )
