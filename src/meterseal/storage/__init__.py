"""Storage: the durable store of the head-end (SQLAlchemy Core on SQLite or PostgreSQL)."""

from meterseal.storage.migrations import LATEST_VERSION, MIGRATIONS, current_version, migrate
from meterseal.storage.schema import (
    MeterRow,
    QuarantinedPacket,
    RegionalLoad,
    StoredOriginal,
    make_engine,
)
from meterseal.storage.store import REPLAYED_COUNTER, Store, StoreRegistry

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "REPLAYED_COUNTER",
    "MeterRow",
    "QuarantinedPacket",
    "RegionalLoad",
    "Store",
    "StoreRegistry",
    "StoredOriginal",
    "current_version",
    "make_engine",
    "migrate",
]
