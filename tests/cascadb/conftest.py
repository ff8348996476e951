"""Fixtures of the PostgreSQL protocol tests: a CascaDB server, and a libpq connection string
to it or to the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meterseal.storage.scratch import scratch_schema
from tests.cascadb.pg_client import Running, libpq
from tests.storage.databases import postgres_url  # noqa: F401  (a fixture)


@pytest.fixture
def postgres_dsn(request: pytest.FixtureRequest) -> str:
    """A libpq connection string to the real PostgreSQL (as `postgres_url`: skipped without)."""
    return libpq(request.getfixturevalue("postgres_url"))


@pytest.fixture
def running() -> Iterator[Running]:
    """A CascaDB PostgreSQL server (trust), stopped afterwards."""
    server = Running()
    yield server
    server.stop()


@pytest.fixture(params=["cascadb", pytest.param("postgresql", marks=pytest.mark.services)])
def dsn(request: pytest.FixtureRequest, unique_name: str) -> Iterator[str]:
    """A libpq connection string to CascaDB's protocol, or to a fresh PostgreSQL schema."""
    if request.param == "cascadb":
        server = Running()
        try:
            yield server.dsn()
        finally:
            server.stop()
        return
    url = request.getfixturevalue("postgres_url")
    with scratch_schema(url, unique_name) as scoped:
        yield libpq(scoped)
