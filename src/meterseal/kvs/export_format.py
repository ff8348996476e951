"""The KVS export format of signed originals: one CBOR object per customer and UTC month.

Object `originals/<customer>/<YYYY-MM>` (customer id percent-encoded) holds, per meter, the
signed originals the store keeps for that customer in that month, each with all its columns
and its COSE_Sign1 bytes exactly as stored (a byte string, never re-encoded: the meter's
signature still verifies), and the meter's UNSIGNED imports with their CBOR records. A row
belongs to the customer whose assignment window holds its timestamp, else to the meter's
registered customer; each row is in exactly one object.

Object `originals-index/<YYYY-MM>` says, per meter, its registered customer and which
objects hold its rows (with their counter range): readers find a meter's rows without
opening every customer's object. The index is written last; a reader trusts only it.
Sans-IO: encoding, decoding and validation only; decoding refuses anything malformed.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import cbor2

from meterseal.errors import MetersealError
from meterseal.storage.schema import StoredOriginal

MONTH_FORMAT = "meterseal/originals-month/1"
INDEX_FORMAT = "meterseal/originals-index/1"
PREFIX = "originals/"
INDEX_PREFIX = "originals-index/"
_MONTH = re.compile(r"\A(\d{4})-(0[1-9]|1[0-2])\Z")


class ExportFormatError(MetersealError):
    """An exported object that is not what the export format says (names the object)."""


@dataclass(frozen=True, slots=True)
class UnsignedRow:
    """An UNSIGNED import as billing reads it: timestamp, energy and its CBOR record."""

    timestamp: int
    energy_wh: int
    record: bytes


@dataclass(frozen=True)
class MeterMonth:
    """One meter's rows inside one customer's month, with the windows the customer held it."""

    meter_id: str
    registered: str  # the meter's customer in the meter table
    windows: tuple[tuple[int, int], ...]
    originals: tuple[StoredOriginal, ...]  # by (timestamp, counter)
    unsigned: tuple[UnsignedRow, ...] = ()


@dataclass(frozen=True)
class CustomerMonth:
    """A customer's month of signed originals: what one exported object holds."""

    customer: str
    month: str
    meters: tuple[MeterMonth, ...]

    @property
    def readings(self) -> int:
        """Signed originals in the object."""
        return sum(len(m.originals) for m in self.meters)


@dataclass(frozen=True, slots=True)
class Holder:
    """Which object holds rows of a meter: the customer, the counter range, the row counts."""

    customer: str
    first_counter: int
    last_counter: int
    originals: int
    unsigned: int


@dataclass(frozen=True)
class MonthIndex:
    """Per meter of a month: its registered customer and the objects holding its rows."""

    month: str
    registered: Mapping[str, str]
    holders: Mapping[str, tuple[Holder, ...]]


def check_month(month: str) -> str:
    """`month` if it is YYYY-MM, else ExportFormatError."""
    if not _MONTH.match(month):
        raise ExportFormatError(f"month {month!r} is not YYYY-MM")
    return month


def month_bounds(month: str) -> tuple[int, int]:
    """[start, end) of a UTC calendar month, in Unix seconds."""
    year, number = (int(p) for p in check_month(month).split("-"))
    start = calendar.timegm((year, number, 1, 0, 0, 0))
    days = calendar.monthrange(year, number)[1]
    return start, start + days * 86_400


def month_of(timestamp: int) -> str:
    """The UTC month (YYYY-MM) holding `timestamp`."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m")


def months_between(start: int, end: int) -> list[str]:
    """The UTC months overlapping [start, end), in order."""
    out: list[str] = []
    at = start
    while at < end:
        month = month_of(at)
        out.append(month)
        at = month_bounds(month)[1]
    return out


def object_name(customer: str, month: str) -> str:
    """The object name of a customer's month (the customer id percent-encoded)."""
    return f"{PREFIX}{quote(customer, safe='')}/{check_month(month)}"


def customer_of(name: str) -> str:
    """The customer id an object name encodes."""
    return unquote(name[len(PREFIX) :].rsplit("/", 1)[0])


def index_name(month: str) -> str:
    """The object name of a month's index."""
    return f"{INDEX_PREFIX}{check_month(month)}"


def encode_month(data: CustomerMonth) -> bytes:
    """The object's bytes (deterministic CBOR; signed originals as stored byte strings)."""
    meters = [
        {
            "meter": m.meter_id,
            "registered": m.registered,
            "windows": [list(w) for w in m.windows],
            "originals": [list(r) for r in m.originals],
            "unsigned": [[u.timestamp, u.energy_wh, u.record] for u in m.unsigned],
        }
        for m in data.meters
    ]
    body = {"format": MONTH_FORMAT, "customer": data.customer, "month": data.month}
    return cbor2.dumps({**body, "meters": meters}, canonical=True)


def encode_index(index: MonthIndex) -> bytes:
    """The index object's bytes (deterministic CBOR)."""
    meters = {
        meter: {
            "registered": index.registered[meter],
            "holders": [
                [h.customer, h.first_counter, h.last_counter, h.originals, h.unsigned]
                for h in index.holders.get(meter, ())
            ],
        }
        for meter in index.registered
    }
    return cbor2.dumps(
        {"format": INDEX_FORMAT, "month": index.month, "meters": meters}, canonical=True
    )


def _load(name: str, data: bytes, wanted: str) -> dict[Any, Any]:
    """The top-level map of an object, of format `wanted`."""
    try:
        top = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise ExportFormatError(f"{name}: not CBOR ({exc})") from None
    if not isinstance(top, dict) or top.get("format") != wanted:
        raise ExportFormatError(f"{name}: not a {wanted} object")
    return top


def _typed(name: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ExportFormatError(f"{name}: {what} is {type(value).__name__}")
    return value


_ORIGINAL_TYPES: tuple[type | tuple[type, ...], ...] = (
    str,
    int,
    int,
    int,
    int,
    str,
    bytes,
    int,
    (int, float),
)


def _original(name: str, meter: str, row: Any) -> StoredOriginal:
    """One stored row, each column checked; the meter must be the entry's."""
    if not isinstance(row, list) or len(row) != len(_ORIGINAL_TYPES):
        raise ExportFormatError(f"{name}: a row of meter {meter} is not a 9-column array")
    for value, kind in zip(row, _ORIGINAL_TYPES, strict=True):
        _typed(name, value, kind, f"a column of meter {meter}'s row")
    if row[0] != meter:
        raise ExportFormatError(f"{name}: a row of meter {row[0]} under meter {meter}")
    return StoredOriginal._make([*row[:8], float(row[8])])


def _meter(name: str, entry: Any) -> MeterMonth:
    if not isinstance(entry, dict):
        raise ExportFormatError(f"{name}: a meter entry is not a map")
    meter = _typed(name, entry.get("meter"), str, "a meter id")
    windows = _typed(name, entry.get("windows"), list, f"meter {meter}'s windows")
    unsigned = _typed(name, entry.get("unsigned"), list, f"meter {meter}'s unsigned rows")
    for u in unsigned:
        if not isinstance(u, list) or [type(v) for v in u] != [int, int, bytes]:
            raise ExportFormatError(f"{name}: an unsigned row of meter {meter} is malformed")
    for w in windows:
        if not isinstance(w, list) or [type(v) for v in w] != [int, int]:
            raise ExportFormatError(f"{name}: a window of meter {meter} is malformed")
    rows = _typed(name, entry.get("originals"), list, f"meter {meter}'s originals")
    return MeterMonth(
        meter,
        _typed(name, entry.get("registered"), str, f"meter {meter}'s registered customer"),
        tuple((w[0], w[1]) for w in windows),
        tuple(_original(name, meter, r) for r in rows),
        tuple(UnsignedRow(*u) for u in unsigned),
    )


def decode_month(name: str, data: bytes) -> CustomerMonth:
    """A customer's month from an object's bytes; ExportFormatError naming what is wrong."""
    top = _load(name, data, MONTH_FORMAT)
    customer = _typed(name, top.get("customer"), str, "the customer")
    month = check_month(_typed(name, top.get("month"), str, "the month"))
    if name != object_name(customer, month):
        raise ExportFormatError(f"{name}: holds {object_name(customer, month)}")
    meters = _typed(name, top.get("meters"), list, "the meters")
    return CustomerMonth(customer, month, tuple(_meter(name, m) for m in meters))


def decode_index(name: str, data: bytes) -> MonthIndex:
    """A month's index from its object's bytes; ExportFormatError naming what is wrong."""
    top = _load(name, data, INDEX_FORMAT)
    month = check_month(_typed(name, top.get("month"), str, "the month"))
    if name != index_name(month):
        raise ExportFormatError(f"{name}: holds {index_name(month)}")
    meters = _typed(name, top.get("meters"), dict, "the meters")
    registered: dict[str, str] = {}
    holders: dict[str, tuple[Holder, ...]] = {}
    for meter, entry in meters.items():
        _typed(name, meter, str, "a meter id")
        if not isinstance(entry, dict):
            raise ExportFormatError(f"{name}: meter {meter}'s entry is not a map")
        registered[meter] = _typed(name, entry.get("registered"), str, "a registered customer")
        found = _typed(name, entry.get("holders"), list, f"meter {meter}'s holders")
        for h in found:
            if not isinstance(h, list) or [type(v) for v in h] != [str, int, int, int, int]:
                raise ExportFormatError(f"{name}: a holder of meter {meter} is malformed")
        holders[meter] = tuple(Holder(*h) for h in found)
    return MonthIndex(month, registered, holders)


def index_of(
    month: str, registered: Mapping[str, str], objects: Sequence[CustomerMonth]
) -> MonthIndex:
    """The index of a month's objects: each meter's holders, from the objects themselves."""
    holders: dict[str, list[Holder]] = {}
    for data in objects:
        for m in data.meters:
            if not m.originals and not m.unsigned:
                continue
            counters = [r.counter for r in m.originals] or [0]
            holders.setdefault(m.meter_id, []).append(
                Holder(
                    data.customer, min(counters), max(counters), len(m.originals), len(m.unsigned)
                )
            )
    return MonthIndex(month, dict(registered), {k: tuple(v) for k, v in holders.items()})
