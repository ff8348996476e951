"""The CascaDB dialect reports the isolation its connections' transactions get, and sets it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import meterseal.cascadb as cascadb
from meterseal.cascadb.engine import Session
from meterseal.storage.cascadb_store import close_embedded
from meterseal.storage.engine import begin_write, make_engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    made = make_engine(f"cascadb:///{tmp_path / 'cascadb'}")
    try:
        yield made
    finally:
        made.dispose()
        close_embedded(tmp_path / "cascadb")


def _session(connection: sa.Connection) -> Session:
    driver = connection.connection.driver_connection
    assert isinstance(driver, cascadb.Connection)
    return driver.session


def test_read_committed_by_default_serializable_when_writing_or_asked(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        assert engine.dialect.default_isolation_level == "READ COMMITTED"
        assert connection.get_isolation_level() == "READ COMMITTED"
        connection.exec_driver_sql("SELECT 1")
        assert connection.get_isolation_level() == "READ COMMITTED"
        assert not _session(connection).writing  # a reader, holding no lock: read committed
    with begin_write(engine) as connection:
        connection.exec_driver_sql("SELECT 1")
        assert connection.get_isolation_level() == "SERIALIZABLE"
        assert _session(connection).writing  # the write lock from its first statement
    serial = engine.connect().execution_options(isolation_level="SERIALIZABLE")
    with serial as connection:
        connection.exec_driver_sql("SELECT 1")
        assert connection.get_isolation_level() == "SERIALIZABLE"
        assert _session(connection).writing
    with engine.connect() as connection:  # given back to the pool at its default
        assert connection.get_isolation_level() == "READ COMMITTED"
    with pytest.raises(sa.exc.ArgumentError):
        engine.connect().execution_options(isolation_level="READ UNCOMMITTED").close()
