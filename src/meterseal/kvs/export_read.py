"""Reading the exported months back: the audit's and the fraud job's input from the KVS.

`KvsOriginals` answers the store's reading queries (a meter's originals in a time range, bill
packets by meter or by key, UNSIGNED imports, each customer's meters) from the objects
`export` wrote, finding a meter's rows through each month's index. `KvsAuditSource` is the
auditor's `AuditSource` with the readings from the KVS and everything else (bills, tariffs,
meter certificates, assignments) from the relational store. A month the KVS has no index of
reads as empty and is named in `absent_months` (callers warn): its rows were never exported.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509

from meterseal.billing.compute import BillPacket
from meterseal.billing.ports import AuditSource, StoredBill, Window
from meterseal.billing.tariff import TariffBook
from meterseal.crypto.registry import MeterDirectory
from meterseal.kvs.export_format import (
    INDEX_PREFIX,
    CustomerMonth,
    ExportFormatError,
    MeterMonth,
    MonthIndex,
    decode_index,
    decode_month,
    index_name,
    month_of,
    months_between,
    object_name,
)
from meterseal.kvs.export_objects import ObjectMap
from meterseal.storage.schema import StoredOriginal

if TYPE_CHECKING:
    from meterseal.fraud.data import Consumption
    from meterseal.storage.bill_store import BillStore

LONG_RANGE = 10 * 366 * 86_400  # longer ranges read only the months exported (none absent)
CACHED_OBJECTS = 256  # decoded customer months kept (about 1 MB each for 15-minute data)


class KvsOriginals:
    """The store's reading queries, answered from exported KVS objects."""

    def __init__(self, objects: ObjectMap, *, cached: int = CACHED_OBJECTS) -> None:
        self.objects = objects
        self.cached = cached
        self.absent_months: set[str] = set()
        self._indexes: dict[str, MonthIndex | None] = {}
        self._months: OrderedDict[str, CustomerMonth] = OrderedDict()

    def months(self) -> list[str]:
        """The months the KVS holds an index of, in order."""
        return [name[len(INDEX_PREFIX) :] for name in self.objects.names(INDEX_PREFIX)]

    def months_in(self, start: int, end: int) -> list[str]:
        """The months [start, end) overlaps; a range of decades: only the exported ones."""
        if end - start > LONG_RANGE:
            first, last = month_of(start), month_of(end - 1)
            return [m for m in self.months() if first <= m <= last]
        return months_between(start, end)

    def index(self, month: str) -> MonthIndex | None:
        """The month's index, None (and noted in `absent_months`) if it was never exported."""
        if month not in self._indexes:
            name = index_name(month)
            data = self.objects.get(name)
            self._indexes[month] = None if data is None else decode_index(name, data)
        found = self._indexes[month]
        if found is None:
            self.absent_months.add(month)
        return found

    def customer_month(self, customer: str, month: str) -> CustomerMonth:
        """One customer's month (decoded, cached); ExportFormatError if the object is gone."""
        name = object_name(customer, month)
        if name in self._months:
            self._months.move_to_end(name)
            return self._months[name]
        data = self.objects.get(name)
        if data is None:
            raise ExportFormatError(f"{index_name(month)} names {name}, which the KVS lacks")
        decoded = decode_month(name, data)
        self._months[name] = decoded
        while len(self._months) > self.cached:
            self._months.popitem(last=False)
        return decoded

    def _entries(self, meter: str, month: str, counter: int | None = None) -> list[MeterMonth]:
        """The meter's entries in the month's objects (those whose range holds `counter`)."""
        index = self.index(month)
        if index is None:
            return []
        out = []
        for h in index.holders.get(meter, ()):
            if counter is not None and not h.first_counter <= counter <= h.last_counter:
                continue
            data = self.customer_month(h.customer, month)
            out += [m for m in data.meters if m.meter_id == meter]
        return out

    def originals(self, meter_id: str, start: int, end: int) -> list[StoredOriginal]:
        """A meter's signed originals with timestamps in [start, end), by (timestamp, counter)."""
        rows = [
            r
            for month in self.months_in(start, end)
            for entry in self._entries(meter_id, month)
            for r in entry.originals
            if start <= r.timestamp < end
        ]
        return sorted(rows, key=lambda r: (r.timestamp, r.counter))

    def packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' stored originals with column timestamps in [start, end)."""
        return [_packet(r) for m in dict.fromkeys(meter_ids) for r in self.originals(m, start, end)]

    def unsigned_packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' UNSIGNED imports with timestamps in [start, end) (counter -timestamp)."""
        return [
            BillPacket(m, -u.timestamp, u.timestamp, u.energy_wh, u.record)
            for m in dict.fromkeys(meter_ids)
            for month in self.months_in(start, end)
            for entry in self._entries(m, month)
            for u in entry.unsigned
            if start <= u.timestamp < end
        ]

    def packets_by_key(self, keys: Iterable[tuple[str, int]]) -> list[BillPacket]:
        """The stored rows with these (meter, counter) keys, in any exported month."""
        wanted = set(keys)
        out: list[BillPacket] = []
        for meter, counter in sorted(wanted):
            if counter < 0:  # an UNSIGNED import's key: minus its timestamp
                out += [
                    BillPacket(meter, counter, u.timestamp, u.energy_wh, u.record)
                    for entry in self._entries(meter, month_of(-counter))
                    for u in entry.unsigned
                    if u.timestamp == -counter
                ]
                continue
            out += [
                _packet(r)
                for month in self.months()
                for entry in self._entries(meter, month, counter)
                for r in entry.originals
                if r.counter == counter
            ]
        return out

    def customers(self) -> dict[str, list[str]]:
        """Each registered customer's meters, as the exported months' indexes name them."""
        out: dict[str, set[str]] = {}
        for month in self.months():
            index = self.index(month)
            for meter, customer in (index.registered if index else {}).items():
                out.setdefault(customer, set()).add(meter)
        return {c: sorted(ms) for c, ms in sorted(out.items())}


def _packet(row: StoredOriginal) -> BillPacket:
    return BillPacket(row.meter_id, row.counter, row.timestamp, row.energy_wh, row.signed_original)


class KvsAuditSource(AuditSource):
    """The auditor's source: readings from the KVS, the rest from the relational store."""

    def __init__(self, base: AuditSource, originals: KvsOriginals) -> None:
        self.base = base
        self.originals = originals

    def bill(self, bill_id: str) -> StoredBill | None:
        """One bill by id (relational store)."""
        return self.base.bill(bill_id)

    def customer_meters(self, customer_id: str) -> list[str]:
        """One customer's meters (relational store)."""
        return self.base.customer_meters(customer_id)

    def packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' originals in [start, end), from the KVS."""
        return self.originals.packets(meter_ids, start, end)

    def packets_by_key(self, keys: Iterable[tuple[str, int]]) -> list[BillPacket]:
        """The rows with these (meter, counter) keys, from the KVS."""
        return self.originals.packets_by_key(keys)

    def unsigned_packets(self, meter_ids: Sequence[str], start: int, end: int) -> list[BillPacket]:
        """The meters' UNSIGNED imports in [start, end), from the KVS."""
        return self.originals.unsigned_packets(meter_ids, start, end)

    def customer_windows(self, customer_id: str, start: int, end: int) -> dict[str, list[Window]]:
        """The customer's meters and windows (relational store)."""
        return self.base.customer_windows(customer_id, start, end)

    def signed_bills(
        self,
        customer_id: str | None = None,
        period_start: int | None = None,
        period_end: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """Signed bills kept (relational store)."""
        return self.base.signed_bills(customer_id, period_start, period_end)

    def tariff_book(self) -> TariffBook:
        """Every stored tariff (relational store)."""
        return self.base.tariff_book()

    def meter_directory(self, ca_certificate: x509.Certificate) -> MeterDirectory:
        """Meters whose certificates chain to the CA (relational store)."""
        return self.base.meter_directory(ca_certificate)


class _BillView:
    """What `fraud.readers.read_store` reads of a BillStore: customers() and store.originals."""

    def __init__(self, originals: KvsOriginals) -> None:
        self.store = originals
        self.customers = originals.customers


def read_consumption(
    originals: KvsOriginals,
    first_day: dt.date,
    days: int,
    *,
    customers: Sequence[str] | None = None,
    with_phasor: bool = True,
    tz: str,
    progress: Callable[[int], object] = lambda _n: None,
) -> Consumption:
    """The fraud job's input read from the KVS, exactly as `read_store` reads the store."""
    from meterseal.fraud.readers import read_store

    view: Any = _BillView(originals)
    bills: BillStore = view
    return read_store(
        bills,
        first_day,
        days,
        customers=customers,
        with_phasor=with_phasor,
        tz=tz,
        progress=progress,
    )
