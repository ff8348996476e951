"""PostgreSQL connections idle in the pool are pinged before use; busy ones are not."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from meterseal.errors import StorageError
from meterseal.storage import Store, engine
from meterseal.storage.scratch import scratch_schema


def _backend_pid(store: Store) -> int:
    with store.connection() as connection:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _terminate(url: str, pid: int) -> None:
    admin = sa.create_engine(url)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()


@pytest.mark.services
def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(
    postgres_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PG_PING_AFTER_IDLE", 0.0)  # every checkout counts as idle
    with scratch_schema(postgres_url, unique_name) as url, Store.open(url) as store:
        first = _backend_pid(store)
        _terminate(postgres_url, first)
        assert _backend_pid(store) != first  # the ping failed, the pool connected again


@pytest.mark.services
def test_a_connection_used_a_moment_ago_is_not_pinged_and_a_restart_costs_one_failure(
    postgres_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PG_PING_AFTER_IDLE", 3600.0)
    with scratch_schema(postgres_url, unique_name) as url, Store.open(url) as store:
        first = _backend_pid(store)
        _terminate(postgres_url, first)
        with pytest.raises(StorageError):
            _backend_pid(store)  # not pinged: the dead connection fails this one use
        assert _backend_pid(store) != first  # the disconnect invalidated the pool
