"""The billing tests' stored month, and a small Dask cluster in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meterseal.jobs.engine import Engine, local_engine
from tests.billing.conftest import ca, fleet, month  # noqa: F401 - fixtures
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures


@pytest.fixture
def engine() -> Iterator[Engine]:
    """One thread worker in this process: light on a shared machine."""
    with local_engine(1, processes=False) as running:
        yield running
