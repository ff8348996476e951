"""SQLite's sqllogictest files (a vendored subset): CascaDB answers as SQLite does.

Each file runs twice: through sqlite3 (the runner must reproduce the recorded results there,
so a runner bug cannot pass silently) and through CascaDB over a MemoryKv. Records run: every
one of the file applying to SQLite (skipif/onlyif), with results compared value by value or
by the recorded MD5 hash.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from meterseal.cascadb import Database, MemoryKv
from tests.cascadb.slt import Run, run_file

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sqllogictest"
FILES = sorted(p.name for p in VECTORS.glob("*.test"))


def _cascadb() -> Run:
    session = Database(MemoryKv()).session()

    def run(sql: str) -> list[tuple[Any, ...]] | None:
        result = session.execute(sql)
        return result.rows if result.columns is not None else None

    return run


def _sqlite() -> Run:
    connection = sqlite3.connect(":memory:", isolation_level=None)

    def run(sql: str) -> list[tuple[Any, ...]] | None:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description else None

    return run


def test_the_subset_is_there() -> None:
    assert len(FILES) >= 14
    assert (VECTORS / "LICENSE").is_file()
    assert (VECTORS / "SOURCE.txt").is_file()


@pytest.mark.parametrize("name", FILES)
def test_cascadb_answers_as_sqlite(name: str) -> None:
    path = VECTORS / name
    reference = run_file(path, _sqlite())
    assert reference.failures == [], "the runner disagrees with SQLite itself"
    outcome = run_file(path, _cascadb())
    assert outcome.run == reference.run > 0
    shown = "\n".join(
        f"line {line}: {sql[:160]!r}: {why[:240]}" for line, sql, why in outcome.failures[:10]
    )
    assert outcome.failures == [], (
        f"{len(outcome.failures)} of {outcome.run} records differ:\n{shown}"
    )
