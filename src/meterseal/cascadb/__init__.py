"""CascaDB: SQL over an ordered key-value store (the secure KVS), after the SecureCloud paper.

`connect(store)` is a PEP 249 connection; `Database(kv)` the engine; keys.py the key layout.
"""

from meterseal.cascadb.dbapi import (
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Connection,
    Cursor,
    Date,
    Time,
    Timestamp,
    apilevel,
    connect,
    paramstyle,
    threadsafety,
)
from meterseal.cascadb.engine import Database, Result
from meterseal.cascadb.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    TransactionAborted,
    Warning,
)
from meterseal.cascadb.kv import MemoryKv, OrderedKv

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Cursor",
    "DataError",
    "Database",
    "DatabaseError",
    "Date",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "MemoryKv",
    "NotSupportedError",
    "OperationalError",
    "OrderedKv",
    "ProgrammingError",
    "Result",
    "Time",
    "Timestamp",
    "TransactionAborted",
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]
