"""The bill store's two hot statements on SQLite (and CascaDB), on the driver directly.

SQLAlchemy's statement, row and parameter objects cost ~2 ms on a 2,880-row month and
~1 ms on the four statements of recording a bill; sqlite3's own cursor does the same work
inside the same transaction (SQLAlchemy's BEGIN IMMEDIATE and its commit).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

import meterseal.cascadb as cascadb
from meterseal.billing.compute import BillPacket, packets_of
from meterseal.errors import StorageError
from meterseal.storage import bill_postgres
from meterseal.transparency.merkle import MerkleTree

_INSERT_BILL = bill_postgres.INSERT_BILL.replace("%s", "?")
_INSERT_LEAF = bill_postgres.INSERT_LEAF.replace("%s", "?")
_INSERT_HEAD = bill_postgres.INSERT_HEAD.replace("%s", "?")
_NEWER_LEAVES = bill_postgres.NEWER_LEAVES.replace("%s", "?")
_TAKEN = "UNIQUE constraint failed: bills.bill_id"


def packets(
    connection: sa.Connection, ids: Sequence[str], start: int, end: int
) -> list[BillPacket]:
    """The meters' stored originals with column timestamps in [start, end)."""
    marks = ", ".join("?" * len(ids))
    where = f'meter_id IN ({marks}) AND "timestamp" >= ? AND "timestamp" < ?'
    try:
        cursor = bill_postgres.driver_of(connection).execute(
            f"{bill_postgres.PACKETS_SELECT} WHERE {where}", (*ids, start, end)
        )
        return packets_of(cursor.fetchall())
    except (sqlite3.Error, cascadb.Error) as exc:
        raise StorageError(f"storage failed: {exc}") from exc


def record_bill(
    connection: sa.Connection,
    row: tuple[Any, ...],
    leaf_hash: bytes,
    log: MerkleTree,
    sign_head: Callable[[int, bytes], bytes],
) -> int:
    """Append a bill (`row`: the bills columns but log_index) to the log, inside the caller's
    write transaction (which holds SQLite's write lock); its log index. BillIdTaken if the id
    is taken, StorageError for anything else SQLite refuses."""
    driver = bill_postgres.driver_of(connection)
    try:
        for (leaf,) in driver.execute(_NEWER_LEAVES, (log.size,)):
            log.append(bytes(leaf))
        index = log.append(leaf_hash)
        root = log.root
        driver.execute(_INSERT_BILL, (*row, index))
        driver.execute(_INSERT_LEAF, (index, row[0], leaf_hash))
        driver.execute(_INSERT_HEAD, (log.size, root, sign_head(log.size, root), row[4]))
    except (sqlite3.IntegrityError, cascadb.IntegrityError) as exc:  # the same message
        if _TAKEN in str(exc):
            raise bill_postgres.BillIdTaken(row[0]) from None
        raise StorageError(f"storage failed: {exc}") from exc
    except (sqlite3.Error, cascadb.Error) as exc:
        raise StorageError(f"storage failed: {exc}") from exc
    return index
