"""/readyz follows the store: 503 with a reason while it cannot be reached, 200 once it can."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from meterseal.runtime.http import HttpAppService, service_app
from meterseal.runtime.lifecycle import State, serve_stage
from meterseal.runtime.readiness import Readiness
from meterseal.storage import Store, make_engine
from meterseal.storage.scratch import scratch_schema


def _readyz_while(
    store: Store, outage: Callable[[], object], recover: Callable[[], object]
) -> None:
    lines: list[str] = []
    app = service_app("probe", "A store behind an app.", Counter(), dict)
    readiness = Readiness(store.not_ready, every=0.0)  # no cache: each scrape probes
    stage = HttpAppService("probe", app, "127.0.0.1:0", 0, readiness=readiness)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(serve_stage(stage, announce=lines.append, stop=stop))
        while not any(line.startswith("ready ") for line in lines):
            await asyncio.sleep(0.01)
        admin = next(line.split()[2] for line in lines if line.startswith("listening admin"))
        async with httpx.AsyncClient(base_url=admin) as client:
            assert (await client.get("/readyz")).status_code == 200
            await asyncio.to_thread(outage)
            down = await client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["reason"].startswith("cannot reach the store ")
            assert "schema_version" in down.json()["reason"]
            await asyncio.to_thread(recover)
            up = await client.get("/readyz")
            assert (up.status_code, up.json()) == (200, {"state": "ready", "reason": None})
        stop.set()
        assert (await task).state is State.STOPPED

    asyncio.run(scenario())


def test_sqlite_file_gone_and_back(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Store.open(f"sqlite:///{path}").close()
    # No pool: an open connection would keep reading the moved file.
    store = Store(make_engine(f"sqlite:///{path}", poolclass=NullPool))
    away = tmp_path / "away.db"

    def recover() -> None:
        path.unlink()  # the empty file a connection made meanwhile
        away.rename(path)

    try:
        _readyz_while(store, lambda: path.rename(away), recover)
    finally:
        store.close()


@pytest.mark.services
def test_postgresql_schema_gone_and_back(postgres_url: str, unique_name: str) -> None:
    with scratch_schema(postgres_url, unique_name) as db_url:
        schema = str(sa.make_url(db_url).query["options"]).split("=", 1)[1]
        _schema_gone_and_back(postgres_url, db_url, schema)


def _schema_gone_and_back(postgres_url: str, db_url: str, schema: str) -> None:
    admin = sa.create_engine(postgres_url)

    def rename(old: str, new: str) -> None:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"ALTER SCHEMA {old} RENAME TO {new}")

    try:
        with Store.open(db_url) as store:
            _readyz_while(
                store,
                lambda: rename(schema, f"{schema}_away"),
                lambda: rename(f"{schema}_away", schema),
            )
    finally:
        admin.dispose()
