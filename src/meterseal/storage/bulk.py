"""An ingest batch's bulk writes, one shape per engine, run at the driver level.

SQLAlchemy builds a parameter dictionary per row and runs every value through its type's
bind processor; for an ingest batch that cost more CPU than the database's own work. These
statements take plain tuples and hand them to the driver as they are:

* SQLite: multi-row INSERT … VALUES statements of up to 512 rows. Not the driver's
  `executemany`: it steps once per row and releases the GIL around every step, and with the
  stage thread opening under the GIL each step then waited for a switch interval to get it
  back (a batch took ~100 ms instead of ~4). Without RETURNING an INSERT is one step, so the
  originals go in under a savepoint: if every row went in (the rowcount says so, the common
  case), that is the answer; if some keys were already there, the savepoint is rolled back
  and the batch goes in again with RETURNING.
* PostgreSQL: `INSERT … SELECT … FROM unnest(arrays)` with the arrays sent in binary
  (`%(name)b`). psycopg re-parses every statement over 4 KiB, which a 500-row VALUES list is,
  so the text stays short and cached whatever the row count; text arrays would be escaped
  element by element in Python. New rows go in by binary COPY instead (rows formatted in
  psycopg's C; its binary arrays are built in Python): the measurements always, the
  originals under a savepoint as on SQLite, and only a batch with a key already stored goes
  in again as the unnest INSERT with ON CONFLICT and RETURNING.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from meterseal.acquisition.records import AcceptedReading
from meterseal.model import phasor_to_json
from meterseal.storage.schema import Key, measurements, signed_originals

LOOKUP_CHUNK = 128  # keys per SQLite lookup statement (a power of two, see `_or_lookup`)
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE for a key already there
MULTI_ROW_MAX = 512  # rows per SQLite INSERT: 4,608 values, well under SQLite's 32,766
ORIGINAL_COLUMNS = tuple(c.name for c in signed_originals.columns)
MEASUREMENT_COLUMNS = ("region_id", "pseudonym", "timestamp", "interval", "energy_wh", "phasor")

Row = tuple[Any, ...]
original_row: Callable[[AcceptedReading], Row] = operator.attrgetter(*ORIGINAL_COLUMNS)
_measured = operator.attrgetter(*MEASUREMENT_COLUMNS[:-1])


def measurement_row(reading: AcceptedReading) -> Row:
    """The `measurements` row of a reading, in MEASUREMENT_COLUMNS order (phasor as JSON text)."""
    phasor = reading.phasor
    return (*_measured(reading), None if phasor is None else json.dumps(phasor_to_json(phasor)))


@functools.cache
def _or_lookup(size: int) -> sa.Select[str, int, bytes]:
    # `(meter_id, counter) IN (VALUES ...)` makes SQLite scan the whole table, and a VALUES
    # list is recompiled on every call. An OR of key equalities probes the primary key;
    # padding to powers of two keeps the compiled statements few and cached.
    so = signed_originals
    keys = [
        sa.and_(so.c.meter_id == sa.bindparam(f"m{j}"), so.c.counter == sa.bindparam(f"c{j}"))
        for j in range(size)
    ]
    return sa.select(so.c.meter_id, so.c.counter, so.c.signed_original).where(sa.or_(*keys))


def _array(name: str, item: sa.types.TypeEngine[Any]) -> sa.Cast[Any]:
    array = postgresql.ARRAY(item)
    return sa.cast(sa.bindparam(name, type_=array), array)


def _unnest(columns: dict[str, sa.types.TypeEngine[Any]]) -> sa.TableValuedAlias:
    arrays = [_array(name, item) for name, item in columns.items()]
    return sa.func.unnest(*arrays).table_valued(*columns).render_derived(name="k")


def _unnest_insert(table: sa.Table, columns: Sequence[str], returning: str = "") -> str:
    """PostgreSQL: INSERT of `columns` from binary arrays named after them."""
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]  # sqlalchemy
    # Arrays of the unsized type: a value too long for the column then fails the insert
    # instead of being cut to size by the cast.
    types = {name: table.c[name].type.compile(dialect).split("(")[0] for name in columns}
    arrays = ", ".join(f"%({name})b::{kind}[]" for name, kind in types.items())
    names = ", ".join(columns)
    return f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays}){returning}"  # noqa: S608 - constant names, bound values


# PostgreSQL's names for the binary COPY of each column type.
_COPY_TYPES = {
    "VARCHAR": "varchar",
    "BIGINT": "int8",
    "INTEGER": "int4",
    "BYTEA": "bytea",
    "DOUBLE PRECISION": "float8",
    "JSON": "text",  # the value is JSON text already; json's binary form is that text
    "TEXT": "text",
}


class _BinaryCopy:
    """PostgreSQL: `COPY table (columns) FROM STDIN` in binary, rows written in psycopg's C."""

    def __init__(self, table: sa.Table, columns: Sequence[str]) -> None:
        dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]  # sqlalchemy
        self.statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        self.types = [
            _COPY_TYPES[table.c[name].type.compile(dialect).split("(")[0]] for name in columns
        ]

    def run(self, connection: Connection, rows: list[Row]) -> None:
        """Copy `rows` (tuples in column order) in; a failure is SQLAlchemy's DBAPIError."""
        import psycopg

        raw = connection.connection.driver_connection
        assert raw is not None, "a connection in a transaction holds the driver's"
        try:
            with raw.cursor() as cursor, cursor.copy(self.statement) as copy:
                copy.set_types(self.types)
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance(self.statement, None, exc, psycopg.Error) from exc


class _MultiRowInsert:
    """SQLite: `statement` for many rows at once, in chunks whose sizes are powers of two.

    The sizes keep the statement texts few, so they stay in the driver's statement cache.
    """

    def __init__(self, statement: sa.Insert, columns: Sequence[str]) -> None:
        compiled = statement.compile(dialect=sqlite.dialect(), column_keys=list(columns))
        assert compiled.positiontup == list(columns), "rows are tuples in column order"
        head, values, rest = str(compiled).partition(" VALUES ")
        row, _, tail = rest.partition(")")
        self._parts = (f"{head}{values}", f"{row})", tail)
        self._texts: dict[int, str] = {}

    def _text(self, rows: int) -> str:
        text = self._texts.get(rows)
        if text is None:
            head, row, tail = self._parts
            text = self._texts[rows] = head + ", ".join([row] * rows) + tail
        return text

    def run(self, connection: Connection, rows: list[Row]) -> int:
        """Insert `rows` (tuples in column order); how many went in."""
        done = start = 0
        while start < len(rows):
            size = min(MULTI_ROW_MAX, 1 << ((len(rows) - start).bit_length() - 1))
            values = tuple(chain.from_iterable(rows[start : start + size]))
            done += connection.exec_driver_sql(self._text(size), values).rowcount
            start += size
        return done


class BulkStatements:
    """Bulk inserts and key lookups of an ingest batch for one engine (sqlite or postgresql)."""

    def __init__(self, dialect: str) -> None:
        self.columnar = dialect == "postgresql"
        self.insert: Any = postgresql.insert if self.columnar else sqlite.insert
        so = signed_originals
        if self.columnar:
            conflict = " ON CONFLICT (meter_id, counter) DO NOTHING RETURNING meter_id, counter"
            self._originals = _unnest_insert(so, ORIGINAL_COLUMNS, conflict)
            self._copy_originals = _BinaryCopy(so, ORIGINAL_COLUMNS)
            self._copy_measurements = _BinaryCopy(measurements, MEASUREMENT_COLUMNS)
        else:
            new_keys = sqlite.insert(so).on_conflict_do_nothing(
                index_elements=["meter_id", "counter"]
            )
            self._new_originals = _MultiRowInsert(new_keys, ORIGINAL_COLUMNS)
            self._new_measurements = _MultiRowInsert(
                sqlite.insert(measurements), MEASUREMENT_COLUMNS
            )
            # For a batch with keys already stored: which of its rows went in.
            self._returning = new_keys.returning(so.c.meter_id, so.c.counter)
        keys = _unnest({"meter_id": so.c.meter_id.type, "counter": so.c.counter.type})
        self._pg_lookup = sa.select(so.c.meter_id, so.c.counter, so.c.signed_original).join(
            keys, sa.and_(so.c.meter_id == keys.c.meter_id, so.c.counter == keys.c.counter)
        )

    def insert_originals(self, connection: Connection, rows: list[Row]) -> set[Key]:
        """Insert signed-original rows whose key is new (ORIGINAL_COLUMNS order); their keys."""
        if self.columnar:
            return self._insert_columns(connection, rows)
        connection.exec_driver_sql("SAVEPOINT originals")
        if self._new_originals.run(connection, rows) == len(rows):
            connection.exec_driver_sql("RELEASE originals")
            return {(row[0], row[1]) for row in rows}
        connection.exec_driver_sql("ROLLBACK TO originals")
        connection.exec_driver_sql("RELEASE originals")
        dicts = [dict(zip(ORIGINAL_COLUMNS, row, strict=True)) for row in rows]
        return {(m, c) for m, c in connection.execute(self._returning, dicts)}

    def _insert_columns(self, connection: Connection, rows: list[Row]) -> set[Key]:
        # A COPY under a savepoint, as SQLite's plain INSERT: ON CONFLICT's speculative
        # insertion, a RETURNING row per reading and psycopg's array dumping (in Python)
        # cost ~2 us a reading, for the rare batch that holds a key already stored.
        connection.exec_driver_sql("SAVEPOINT originals")
        try:
            self._copy_originals.run(connection, rows)
        except sa.exc.IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
            connection.exec_driver_sql("ROLLBACK TO SAVEPOINT originals")
            connection.exec_driver_sql("RELEASE SAVEPOINT originals")
            columns = _columns(ORIGINAL_COLUMNS, rows)
            return {(m, c) for m, c in connection.exec_driver_sql(self._originals, columns)}
        connection.exec_driver_sql("RELEASE SAVEPOINT originals")
        return {(row[0], row[1]) for row in rows}

    def insert_measurements(self, connection: Connection, rows: list[Row]) -> None:
        """Insert measurement rows (MEASUREMENT_COLUMNS order)."""
        if self.columnar:
            self._copy_measurements.run(connection, rows)
        else:
            self._new_measurements.run(connection, rows)

    def lookups(self, keys: list[Key]) -> Iterator[tuple[sa.Select[str, int, bytes], Any]]:
        """Statements and parameters that fetch the signed originals stored under `keys`."""
        if self.columnar:
            yield (
                self._pg_lookup,
                {"meter_id": [m for m, _ in keys], "counter": [c for _, c in keys]},
            )
            return
        for i in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[i : i + LOOKUP_CHUNK]
            size = 1 << (len(chunk) - 1).bit_length()
            padded = chunk + [chunk[-1]] * (size - len(chunk))  # repeats match nothing new
            params: dict[str, str | int] = {f"m{j}": m for j, (m, _) in enumerate(padded)}
            params.update({f"c{j}": c for j, (_, c) in enumerate(padded)})
            yield _or_lookup(size), params


def _columns(names: Sequence[str], rows: list[Row]) -> dict[str, list[Any]]:
    return {name: list(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)}
