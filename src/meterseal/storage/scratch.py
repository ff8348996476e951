"""Throw-away PostgreSQL schemas for benchmarks and tests."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import sqlalchemy as sa


@contextlib.contextmanager
def scratch_schema(url: str, prefix: str = "ms_scratch") -> Iterator[str]:
    """A URL on a new schema of `url`'s database (via search_path), dropped on exit."""
    # A schema per run, so concurrent runs never see each other's tables.
    schema = f"{prefix}_{secrets.token_hex(6)}"
    admin = sa.create_engine(url)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        try:
            scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
            yield scoped.render_as_string(hide_password=False)
        finally:
            with admin.begin() as connection:
                connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        admin.dispose()
