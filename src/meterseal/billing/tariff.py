"""Tariffs as versioned data (flat, time-of-use, tiered blocks), their digest, and pricing.

A tariff is named by (tariff_id, version) and pinned by `digest()`, the SHA-256 of its
canonical CBOR: a bill records all three, so a tariff changed after signing is detected.
Pricing is sans-IO; only `load_tariff` and `builtin_tariffs` read files.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from meterseal.billing.tariff_files import (
    decimal_value,
    int_value,
    rates_from_dict,
    rates_to_dict,
    str_value,
    take,
    toml_text,
)
from meterseal.billing.tariff_pricing import (
    ChargeLine,
    Charges,
    Use,
    energy_line,
    energy_use,
    slot_energy_use,
    standing_days,
    standing_line,
    total_charges,
)
from meterseal.billing.tariff_rates import (
    Block,
    FlatRate,
    Rates,
    TariffError,
    TieredBlocks,
    TimeOfUse,
    TouWindow,
    check_price,
    decimal_text,
)
from meterseal.crypto.cose import CoseFormatError, dumps, loads_strict
from meterseal.model import MAX_UINT63

__all__ = [
    "Block",
    "ChargeLine",
    "Charges",
    "FlatRate",
    "Tariff",
    "TariffBook",
    "TariffError",
    "TieredBlocks",
    "TimeOfUse",
    "TouWindow",
    "builtin_tariffs",
    "load_tariff",
    "loads_tariff",
    "price",
    "price_slots",
]

MAX_CBOR_BYTES = 65_536
_TARIFF_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_FIELDS = ("tariff_id", "version", "currency", "timezone", "standing_charge_per_day", "rates")
_OPTIONAL = ("effective_from",)  # present only when set: older tariffs keep their bytes
# "localtime" is whatever the machine is set to, so it would price alike nowhere else.
_NOT_IANA = frozenset({"localtime", "posixrules"})


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_IANA


def _zone(key: object) -> zoneinfo.ZoneInfo:
    if not isinstance(key, str) or key not in _zone_names():
        raise TariffError("timezone", f"must be an IANA time zone such as 'Europe/Berlin': {key!r}")
    return zoneinfo.ZoneInfo(key)


@dataclass(frozen=True)
class Tariff:
    """A published tariff: (tariff_id, version) names it, `digest()` pins its exact content."""

    tariff_id: str
    version: int
    currency: str
    timezone: str
    standing_charge_per_day: Decimal
    rates: Rates
    effective_from: dt.date | None = None  # first local day it prices (None: since always)

    def __post_init__(self) -> None:
        if not isinstance(self.tariff_id, str) or not _TARIFF_ID.fullmatch(self.tariff_id):
            problem = "must be 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
            raise TariffError("tariff_id", problem)
        if type(self.version) is not int or not 1 <= self.version <= MAX_UINT63:
            raise TariffError("version", f"must be an integer of at least 1, got {self.version!r}")
        if not isinstance(self.currency, str) or not _CURRENCY.fullmatch(self.currency):
            raise TariffError("currency", f"must be ISO 4217: 3 capital letters, {self.currency!r}")
        _zone(self.timezone)
        check_price("standing_charge_per_day", self.standing_charge_per_day)
        if not isinstance(self.rates, FlatRate | TimeOfUse | TieredBlocks):
            raise TariffError("rates", "must be a FlatRate, TimeOfUse or TieredBlocks")
        if self.effective_from is not None and (
            type(self.effective_from) is not dt.date or self.effective_from.year < 1970
        ):
            raise TariffError("effective_from", "must be a date from 1970-01-01 on")

    @property
    def kind(self) -> str:
        """ "flat", "time_of_use" or "tiered"."""
        return self.rates.kind

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The time zone of time-of-use windows and standing-charge days."""
        return _zone(self.timezone)

    def to_dict(self) -> dict[str, Any]:
        """The tariff as a TOML/JSON-ready dict; prices are canonical decimal strings."""
        data = {
            "tariff_id": self.tariff_id,
            "version": self.version,
            "currency": self.currency,
            "timezone": self.timezone,
            "standing_charge_per_day": decimal_text(self.standing_charge_per_day),
            "rates": rates_to_dict(self.rates),
        }
        if self.effective_from is not None:
            data["effective_from"] = self.effective_from.isoformat()
        return data

    def in_force_on(self, day: dt.date) -> bool:
        """Whether this version prices periods starting on local `day` (its date has come)."""
        return self.effective_from is None or self.effective_from <= day

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tariff:
        """A tariff from a dict as `to_dict` writes it; unknown keys and floats are refused."""
        table = take(data, "", _FIELDS, _OPTIONAL)
        return cls(
            str_value("tariff_id", table["tariff_id"]),
            int_value("version", table["version"]),
            str_value("currency", table["currency"]),
            str_value("timezone", table["timezone"]),
            decimal_value("standing_charge_per_day", table["standing_charge_per_day"]),
            rates_from_dict(table["rates"]),
            _date("effective_from", table.get("effective_from")),
        )

    def to_cbor(self) -> bytes:
        """Canonical CBOR (RFC 8949 section 4.2.1) of `to_dict()`: what the digest covers."""
        return self._cbor

    @cached_property
    def _cbor(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def from_cbor(cls, data: bytes) -> Tariff:
        """A tariff from its canonical CBOR; any other encoding of it is refused."""
        if len(data) > MAX_CBOR_BYTES:
            raise TariffError(None, f"CBOR of {len(data)} bytes exceeds {MAX_CBOR_BYTES}")
        try:
            item = loads_strict(data)
        except CoseFormatError as exc:
            raise TariffError(None, f"not a CBOR tariff: {exc}") from None
        tariff = cls.from_dict(item)
        if tariff.to_cbor() != data:
            raise TariffError(None, "not the canonical CBOR encoding of the tariff")
        return tariff

    def digest(self) -> bytes:
        """SHA-256 of `to_cbor()`: equal digests mean the same prices, windows and rules."""
        return hashlib.sha256(self._cbor).digest()

    def to_toml(self) -> str:
        """The tariff as a TOML file that `load_tariff` reads back to an equal tariff."""
        return toml_text(self.to_dict())


def price(
    tariff: Tariff, intervals: Iterable[tuple[int, int, int]], *, period_start: int, period_end: int
) -> Charges:
    """The charges for `intervals` (start Unix s, length s, Wh) in [period_start, period_end).

    Every interval must lie inside the period. Lines: energy by rate (see docs/tariffs.md),
    then the standing charge for `standing_days` days unless it is zero. Each line is rounded
    half-even to the currency's minor unit; the total is the sum of the rounded lines.
    """
    if period_end <= period_start:
        raise TariffError("period_end", "must be later than period_start")
    uses = energy_use(tariff.rates, tariff.zone, intervals, period_start, period_end)
    return _charges(tariff, uses, period_start, period_end)


def price_slots(
    tariff: Tariff,
    slot_energy: Sequence[int],
    *,
    period_start: int,
    interval: int,
    standing: tuple[int, int] | None = None,
) -> Charges:
    """`price` of a period cut into equal slots: slot i holds `slot_energy[i]` Wh.

    `standing`: [start, end) the standing charge is for, if not the whole period.

    The same charges as `price` of the intervals (period_start + i * interval, interval, Wh)
    in [period_start, period_start + len(slot_energy) * interval), faster: the billing
    service has a month as one energy per slot.
    """
    uses = slot_energy_use(tariff.rates, tariff.zone, slot_energy, period_start, interval)
    start, end = standing or (period_start, period_start + len(slot_energy) * interval)
    return _charges(tariff, uses, start, end)


def _charges(tariff: Tariff, uses: Sequence[Use], period_start: int, period_end: int) -> Charges:
    lines = [energy_line(label, wh, unit, tariff.currency) for label, wh, unit in uses]
    if tariff.standing_charge_per_day:
        days = standing_days(tariff.zone, period_start, period_end)
        lines.append(standing_line(days, tariff.standing_charge_per_day, tariff.currency))
    return total_charges(tariff.currency, lines)


class TariffBook:
    """The tariffs in force by (id, version); append-only: a published version never changes."""

    def __init__(self, tariffs: Iterable[Tariff] = ()) -> None:
        self._tariffs: dict[tuple[str, int], Tariff] = {}
        for tariff in tariffs:
            self.add(tariff)

    def add(self, tariff: Tariff) -> None:
        """Publish `tariff`; the same content again is a no-op, different content is refused."""
        key = (tariff.tariff_id, tariff.version)
        known = self._tariffs.setdefault(key, tariff)
        if known.digest() != tariff.digest():
            raise TariffError(
                "version",
                f"{tariff.tariff_id} version {tariff.version} is already published with digest "
                f"{known.digest().hex()[:16]}…; a changed tariff needs a new version",
            )

    def get(self, tariff_id: str, version: int) -> Tariff:
        """The tariff published as (tariff_id, version)."""
        try:
            return self._tariffs[(tariff_id, version)]
        except KeyError:
            raise TariffError("version", f"no tariff {tariff_id} version {version}") from None

    def in_force(self, tariff_id: str, at: int) -> Tariff:
        """The highest version of `tariff_id` whose effective date has come by Unix time `at`
        (its local day in the tariff's zone); a version without a date is always in force."""
        versions = [t for (i, _), t in self._tariffs.items() if i == tariff_id]
        if not versions:
            raise TariffError("tariff_id", f"no tariff {tariff_id}")
        ready = [t for t in versions if t.in_force_on(_local_day(at, t))]
        if not ready:
            first = min(t.effective_from for t in versions if t.effective_from is not None)
            day = _local_day(at, versions[0])
            raise TariffError(
                "effective_from", f"no version of {tariff_id} is in force on {day} (from {first})"
            )
        return max(ready, key=lambda t: t.version)

    def latest(self, tariff_id: str) -> Tariff:
        """The highest version of `tariff_id`."""
        versions = [v for (i, v) in self._tariffs if i == tariff_id]
        if not versions:
            raise TariffError("tariff_id", f"no tariff {tariff_id}")
        return self._tariffs[(tariff_id, max(versions))]

    def __iter__(self) -> Iterator[Tariff]:
        return iter([self._tariffs[key] for key in sorted(self._tariffs)])

    def __len__(self) -> int:
        return len(self._tariffs)


def _local_day(at: int, tariff: Tariff) -> dt.date:
    return dt.datetime.fromtimestamp(at, tariff.zone).date()


def _date(field: str, value: object) -> dt.date | None:
    """A date from a TOML date or a "YYYY-MM-DD" string; None when absent."""
    if value is None:
        return None
    if type(value) is dt.date:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise TariffError(field, f'must be a date "YYYY-MM-DD", got {value!r}')


def loads_tariff(text: str, source: str | None = None) -> Tariff:
    """A tariff from TOML text; numbers are read as exact decimals, errors name `source`."""
    try:
        return Tariff.from_dict(tomllib.loads(text, parse_float=Decimal))
    except tomllib.TOMLDecodeError as exc:
        raise TariffError(None, f"not valid TOML: {exc}", source) from None
    except TariffError as exc:
        raise TariffError(exc.field, exc.problem, source) from None


def load_tariff(path: Path) -> Tariff:
    """A tariff from a TOML file (format in docs/tariffs.md)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TariffError(None, f"cannot read the file: {exc}", str(path)) from None
    return loads_tariff(text, str(path))


def builtin_tariffs() -> TariffBook:
    """The example tariffs shipped in meterseal/billing/tariffs/*.toml."""
    folder = resources.files("meterseal.billing").joinpath("tariffs")
    book = TariffBook()
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            source = f"meterseal/billing/tariffs/{entry.name}"
            book.add(loads_tariff(entry.read_text(encoding="utf-8"), source))
    return book
