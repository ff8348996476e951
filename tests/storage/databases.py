"""Empty databases for tests: SQLite, PostgreSQL (a fresh schema) and CascaDB (a directory).

`db_url` here is SQLite and PostgreSQL, for the suites that store through the head-end's
store; tests/storage's own `db_url` (conftest.py) adds CascaDB, the store's conformance run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from meterseal.storage.cascadb_store import close_embedded
from meterseal.storage.scratch import scratch_schema
from tests.services import require_service

PG_URL = os.environ.get("MS_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _probe_postgres() -> None:
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """MS_POSTGRES_URL once it answers (skip, or fail under MS_REQUIRE_SERVICES=1)."""
    shown = sa.make_url(PG_URL).render_as_string(hide_password=True)
    require_service("PostgreSQL", shown, _probe_postgres)
    return PG_URL


@contextmanager
def database(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> Iterator[str]:
    """An empty database of `kind`: a SQLite file, a fresh PostgreSQL schema dropped
    afterwards, or a CascaDB on the secure KVS in a directory (local-directory nodes)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    elif kind == "cascadb":
        try:
            yield f"cascadb:///{tmp_path / 'cascadb'}"
        finally:
            close_embedded(tmp_path / "cascadb")
    else:
        with scratch_schema(request.getfixturevalue("postgres_url"), unique_name) as url:
            yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[str]:
    """An empty SQLite or PostgreSQL database."""
    with database(request.param, request, tmp_path, unique_name) as url:
        yield url
