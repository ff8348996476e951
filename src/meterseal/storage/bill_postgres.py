"""The bill store's two hot statements on PostgreSQL, on psycopg directly.

Reading a bill's packets and recording a bill are the billing service's round trips. Through
SQLAlchemy each statement is its own round trip (~0.3 ms on this VM) plus its Python; here
the packets come in binary (no hex-encoded bytea on the socket) and the recording runs in
psycopg's pipeline mode: the lock and the read of newer log leaves in one round trip, the
three inserts in another, then the commit (SQLAlchemy's, on leaving the transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import errors as pg_errors

from meterseal.billing.compute import BillPacket, packets_of
from meterseal.errors import StorageError
from meterseal.transparency.merkle import MerkleTree

BILL_LOG_LOCK = 0x6D657465_62696C6C  # any constant shared by every billing process
PACKET_COLUMNS = ("meter_id", "counter", "timestamp", "energy_wh", "signed_original")
PACKETS_SELECT = (
    "SELECT "  # noqa: S608 - constant column names; every value is bound
    + ", ".join(f'"{c}"' for c in PACKET_COLUMNS)
    + " FROM signed_originals"
)
_BILL_COLUMNS = (
    "bill_id",
    "customer_id",
    "period_start",
    "period_end",
    "issued_at",
    "currency",
    "total",
    "signed_bill",
    "manifest",
    "log_index",
)
INSERT_BILL = (
    f"INSERT INTO bills ({', '.join(_BILL_COLUMNS)}) "  # noqa: S608 - constant names
    f"VALUES ({', '.join(['%s'] * len(_BILL_COLUMNS))})"
)
INSERT_LEAF = "INSERT INTO bill_log (log_index, bill_id, leaf_hash) VALUES (%s, %s, %s)"
INSERT_HEAD = (
    "INSERT INTO bill_log_heads (tree_size, root, signed_head, issued_at) VALUES (%s, %s, %s, %s)"
)
_BILL_SELECT = f"SELECT {', '.join(_BILL_COLUMNS)} FROM bills WHERE bill_id = %s"  # noqa: S608 - constant
NEWER_LEAVES = "SELECT leaf_hash FROM bill_log WHERE log_index >= %s ORDER BY log_index"


class BillIdTaken(StorageError):
    """The bills table's primary key refused the bill id (the bill store says BillExists)."""


def driver_of(connection: sa.Connection) -> Any:
    """The DB-API connection under a SQLAlchemy connection (psycopg or sqlite3)."""
    return connection.connection.driver_connection


def packets(connection: sa.Connection, ids: list[str], start: int, end: int) -> list[BillPacket]:
    """The meters' stored originals with column timestamps in [start, end), read in binary."""
    where = 'meter_id = ANY(%s) AND "timestamp" >= %s AND "timestamp" < %s'
    try:
        cursor = driver_of(connection).execute(
            f"{PACKETS_SELECT} WHERE {where}", (ids, start, end), binary=True
        )
        return packets_of(cursor.fetchall())
    except psycopg.Error as exc:
        raise StorageError(f"storage failed: {exc}") from exc


def bill(connection: sa.Connection, bill_id: str) -> tuple[Any, ...] | None:
    """The bills row (columns in table order) of `bill_id`, read in binary, or None."""
    try:
        cursor = driver_of(connection).execute(_BILL_SELECT, (bill_id,), binary=True)
        return cursor.fetchone()  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise StorageError(f"storage failed: {exc}") from exc


def record_bill(
    connection: sa.Connection,
    row: tuple[Any, ...],
    leaf_hash: bytes,
    log: MerkleTree,
    sign_head: Callable[[int, bytes], bytes],
) -> int:
    """Append a bill (`row`: the bills columns but log_index) to the log, inside the caller's
    transaction; its log index. BillIdTaken if the id is taken (the transaction is then
    aborted), StorageError for anything else the server refuses."""
    driver = driver_of(connection)
    try:
        with driver.pipeline(), driver.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (BILL_LOG_LOCK,))
            cursor.execute(NEWER_LEAVES, (log.size,), binary=True)
            for (leaf,) in cursor.fetchall():  # fetching syncs the pipeline: one round trip
                log.append(bytes(leaf))
            index = log.append(leaf_hash)
            root = log.root
            head = sign_head(log.size, root)
            cursor.execute(INSERT_BILL, (*row, index))
            cursor.execute(INSERT_LEAF, (index, row[0], leaf_hash))
            cursor.execute(INSERT_HEAD, (log.size, root, head, row[4]))
    except pg_errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "pk_bills":
            raise BillIdTaken(row[0]) from None
        raise StorageError(f"storage failed: {exc}") from exc
    except psycopg.Error as exc:
        raise StorageError(f"storage failed: {exc}") from exc
    return index
