"""Storage: the durable store of the head-end (SQLAlchemy Core on SQLite, PostgreSQL, CascaDB)."""

from sqlalchemy.dialects import registry

from meterseal.storage.engine import make_engine
from meterseal.storage.migrations import LATEST_VERSION, MIGRATIONS, current_version, migrate
from meterseal.storage.schema import (
    MeterRow,
    QuarantinedPacket,
    RegionalLoad,
    StoredOriginal,
)
from meterseal.storage.store import REPLAYED_COUNTER, Store, StoreRegistry

# `cascadb:///DIR` URLs: the dialect module is imported only when such a URL is used.
registry.register("cascadb", "meterseal.storage.cascadb_store", "CascadbDialect")

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
