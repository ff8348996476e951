"""Import parsed readings into the store: signed ones verified like ingest, the rest unsigned.

A row with the meter's signed original is verified against the meter registry (the
certificate chains to the deployment CA, the signature holds, the meter was valid when it
signed) and must carry the signed values; it is then stored as a signed original, with its
anonymized measurement, exactly as ingest stores it. A row without one is stored as an
UNSIGNED import (`storage.imports`). Rows go in batches, each one transaction; a refused row
costs only itself, and importing a file again stores nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.records import AcceptedReading, StoreOutcome
from meterseal.billing.unsigned import UnsignedReading
from meterseal.crypto.packet import verify_signed_originals
from meterseal.crypto.registry import MeterDirectory
from meterseal.errors import InvalidPacket
from meterseal.exchange.csv_readings import ParsedRow, RejectedRow
from meterseal.storage.imports import ImportStore
from meterseal.storage.store import Store

BATCH = 2000


@dataclass
class ImportReport:
    """What an import did: rows read, stored (signed, unsigned), duplicates, rejected rows."""

    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rejected: list[RejectedRow] = field(default_factory=list)
    first: int | None = None  # earliest and latest timestamps stored or already there
    last: int | None = None
    meters: set[str] = field(default_factory=set)

    def count(self, kind: str, reading: UnsignedReading) -> None:
        """Count one outcome of a reading that went to the store."""
        self.outcomes[kind] += 1
        self.meters.add(reading.meter_id)
        t = reading.timestamp
        self.first = t if self.first is None else min(self.first, t)
        self.last = t if self.last is None else max(self.last, t)


class Importer:
    """Imports readings into one store, verifying signed ones against `registry`."""

    def __init__(
        self,
        store: Store,
        registry: MeterDirectory,
        anonymizer: Anonymizer,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.imports = ImportStore(store)
        self.registry = registry
        self.anonymizer = anonymizer
        self.clock = clock
        self.known = self.imports.meter_ids()

    def run(
        self,
        items: Iterable[ParsedRow | RejectedRow],
        *,
        source: str,
        progress: Callable[[int], None] = lambda n: None,
        batch: int = BATCH,
    ) -> ImportReport:
        """Import every row; `progress(n)` after each batch of n rows."""
        report = ImportReport()
        for chunk in _chunks(iter(items), batch):
            self._batch(chunk, source, report)
            report.rows += len(chunk)
            progress(len(chunk))
        report.rejected.sort(key=lambda r: r.line)
        return report

    def _batch(
        self, chunk: list[ParsedRow | RejectedRow], source: str, report: ImportReport
    ) -> None:
        signed: list[ParsedRow] = []
        unsigned: list[ParsedRow] = []
        for item in chunk:
            if isinstance(item, RejectedRow):
                report.rejected.append(item)
            elif item.reading.meter_id not in self.known:
                why = f"meter {item.reading.meter_id} is not registered (meters register first)"
                report.rejected.append(RejectedRow(item.line, why, item.fields))
            else:
                (signed if item.signed is not None else unsigned).append(item)
        if unsigned:
            now = self.clock()
            readings = [row.reading for row in unsigned]
            outcomes = self.imports.save_unsigned(readings, source=source, now=now)
            self._tally(unsigned, outcomes, "unsigned", report)
        if signed:
            self._signed(signed, report)

    def _signed(self, rows: list[ParsedRow], report: ImportReport) -> None:
        opened = verify_signed_originals([row.signed or b"" for row in rows], self.registry)
        received = self.clock().timestamp()
        good: list[ParsedRow] = []
        accepted: list[AcceptedReading] = []
        for row, outcome in zip(rows, opened, strict=True):
            if isinstance(outcome, InvalidPacket):
                why = f"the meter signature is refused ({outcome.reason.value})"
                report.rejected.append(RejectedRow(row.line, why, row.fields))
                continue
            r, mine = outcome.reading, row.reading
            signed_values = (r.meter_id, r.timestamp, r.interval, r.energy_wh)
            if signed_values != (mine.meter_id, mine.timestamp, mine.interval, mine.energy_wh):
                why = (
                    f"the row differs from its signed reading (meter {r.meter_id}, "
                    f"start {r.timestamp}, {r.interval} s, {r.energy_wh} Wh)"
                )
                report.rejected.append(RejectedRow(row.line, why, row.fields))
                continue
            good.append(row)
            accepted.append(
                AcceptedReading(
                    r.meter_id,
                    r.counter,
                    r.timestamp,
                    r.interval,
                    r.energy_wh,
                    outcome.suite.name,
                    outcome.signed_original,
                    outcome.sent_at,
                    received,
                    outcome.meter.region_id,
                    self.anonymizer.pseudonym(r.meter_id),
                    r.phasor,
                    "import",
                )
            )
        if accepted:
            self._tally(good, self.store.save_batch(accepted, []), "signed", report)

    @staticmethod
    def _tally(
        rows: list[ParsedRow], outcomes: list[StoreOutcome], kind: str, report: ImportReport
    ) -> None:
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome is StoreOutcome.CONFLICT:
                meter_id = row.reading.meter_id
                why = (
                    f"another reading is stored for meter {meter_id} at this time"
                    if kind == "unsigned"
                    else f"meter {meter_id} signed other bytes under this counter "
                    "(quarantined as replayed_counter)"
                )
                report.rejected.append(RejectedRow(row.line, why, row.fields))
            elif outcome is StoreOutcome.STORED:
                report.count(f"stored {kind}", row.reading)
            else:
                report.count("duplicate", row.reading)


Item = ParsedRow | RejectedRow


def _chunks(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while chunk := list(islice(items, size)):
        yield chunk
