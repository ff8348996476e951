"""The exporter: each customer's month of signed originals from the store into KVS objects.

For a UTC month it reads every registered meter's signed originals and UNSIGNED imports,
gives each row to the customer whose assignment window holds its timestamp (else to the
meter's registered customer), writes one object per customer (`export_format`), then the
month's index. Export a month once it is closed: rows stored later are not in the objects
until the month is exported again (exporting again rewrites every object of the month).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from meterseal.kvs.export_format import (
    CustomerMonth,
    MeterMonth,
    UnsignedRow,
    encode_index,
    encode_month,
    index_name,
    index_of,
    month_bounds,
    object_name,
)
from meterseal.kvs.export_objects import ObjectMap
from meterseal.storage.bill_store import BillStore
from meterseal.storage.imports import ImportStore, Window
from meterseal.storage.schema import StoredOriginal


@dataclass(frozen=True)
class ExportSummary:
    """What one month's export wrote: objects, rows, bytes, and the index's name."""

    month: str
    objects: tuple[str, ...]
    readings: int
    unsigned: int
    bytes: int
    index: str


def _holders(
    between: dict[str, dict[str, list[Window]]],
) -> dict[str, list[tuple[str, Window]]]:
    """meter -> (customer, window) for every customer holding it (`customers_between`)."""
    out: dict[str, list[tuple[str, Window]]] = defaultdict(list)
    for customer, meters in between.items():
        for meter, windows in meters.items():
            out[meter].extend((customer, w) for w in windows)
    return out


def _owner(timestamp: int, holders: list[tuple[str, Window]], registered: str) -> str:
    """The customer holding the meter at `timestamp`, else its registered customer."""
    return next((c for c, w in holders if w.holds(timestamp)), registered)


def month_objects(bills: BillStore, month: str) -> tuple[list[CustomerMonth], dict[str, str]]:
    """The month's customer objects (by customer) and each meter's registered customer."""
    start, end = month_bounds(month)
    imports = ImportStore(bills.store)
    between = imports.customers_between(start, end)
    holders = _holders(between)
    registered = {m: c for c, meters in bills.customers().items() for m in meters}
    entries: dict[str, dict[str, MeterMonth]] = defaultdict(dict)
    for customer, meters in between.items():
        for meter, windows in meters.items():
            entries[customer][meter] = MeterMonth(
                meter, registered[meter], tuple((w.start, w.end) for w in windows), ()
            )
    for meter in sorted(registered):
        rows: dict[str, list[StoredOriginal]] = defaultdict(list)
        for row in bills.store.originals(meter, start, end):
            rows[_owner(row.timestamp, holders[meter], registered[meter])].append(row)
        unsigned: dict[str, list[UnsignedRow]] = defaultdict(list)
        for p in sorted(imports.unsigned_packets([meter], start, end), key=lambda p: p.timestamp):
            owner = _owner(p.timestamp, holders[meter], registered[meter])
            unsigned[owner].append(UnsignedRow(p.timestamp, p.energy_wh, p.signed_original))
        for customer in sorted(set(rows) | set(unsigned)):
            held = entries[customer].get(meter)
            entries[customer][meter] = MeterMonth(
                meter,
                registered[meter],
                held.windows if held is not None else (),
                tuple(rows[customer]),
                tuple(unsigned[customer]),
            )
    objects = [
        CustomerMonth(c, month, tuple(v for _, v in sorted(entries[c].items())))
        for c in sorted(entries)
    ]
    return objects, registered


def export_month(
    bills: BillStore,
    out: ObjectMap,
    month: str,
    *,
    progress: Callable[[int], object] = lambda _n: None,
) -> ExportSummary:
    """Write the month's objects, one per customer, then its index; what was written."""
    objects, registered = month_objects(bills, month)
    names: list[str] = []
    size = 0
    for data in objects:
        body = encode_month(data)
        name = object_name(data.customer, month)
        out.put(name, body)
        names.append(name)
        size += len(body)
        progress(1)
    index = encode_index(index_of(month, registered, objects))
    out.put(index_name(month), index)
    return ExportSummary(
        month,
        tuple(names),
        sum(o.readings for o in objects),
        sum(len(m.unsigned) for o in objects for m in o.meters),
        size + len(index),
        index_name(month),
    )
