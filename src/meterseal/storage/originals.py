"""Bulk loading of signed originals alone: a fast path past ingest for benchmarks and fixtures.

Ingest writes each reading twice (the signed original and the anonymized measurement) and
counts outcomes; billing and the audit read only `signed_originals`. To put tens of millions
of already signed readings in place for the billing benchmark, this path writes just those
rows: PostgreSQL `COPY`, SQLite one prepared `INSERT` over many rows. Nothing is checked or
deduplicated here (a repeated key fails the load): the rows must come from meters' real
signatures (`bench.months`), never from a head-end's input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from meterseal.storage.schema import signed_originals
from meterseal.storage.store import Store

ORIGINAL_COLUMNS = tuple(c.name for c in signed_originals.columns)
OriginalRow = Sequence[Any]  # values in ORIGINAL_COLUMNS order


def load_originals(store: Store, rows: Iterable[OriginalRow]) -> int:
    """Insert signed-original rows (ORIGINAL_COLUMNS order) in one transaction; how many."""
    columns = ", ".join(f'"{c}"' for c in ORIGINAL_COLUMNS)
    count = 0
    with store.transaction() as connection:
        if connection.dialect.name == "postgresql":
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY signed_originals ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
            return count
        batch = [tuple(row) for row in rows]  # the driver wants tuples, the cache has lists
        # The plain INSERT with positional marks, run by the driver's executemany: SQLAlchemy's
        # per-row dictionaries would add about a microsecond per row.
        insert = str(signed_originals.insert().compile(dialect=connection.dialect))
        connection.exec_driver_sql(insert, batch)
        return len(batch)
