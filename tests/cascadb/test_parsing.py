"""What a parsed statement asks of its transaction (cascadb.parsing)."""

from __future__ import annotations

from unittest import mock

import pytest
from sqlglot import exp

from meterseal.cascadb.parsing import parse, reads_only


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", True),
        ("SELECT a FROM t WHERE a = 1 UNION SELECT b FROM u", True),
        ("SELECT a FROM t FOR UPDATE", False),
        ("SELECT a FROM (SELECT a FROM t FOR UPDATE) AS s", False),
        ("INSERT INTO t VALUES (1)", False),
        ("DELETE FROM t", False),
    ],
)
def test_only_a_query_without_a_lock_clause_reads_only(sql: str, expected: bool) -> None:
    """A reader runs queries; FOR UPDATE anywhere in one asks for the write lock."""
    (node,) = parse(sql, "postgres")
    assert reads_only(node) is expected
    assert reads_only(node) is expected  # the kept answer is the same


def test_a_cached_statement_is_walked_for_a_lock_clause_once() -> None:
    """Every execution asks twice (read_ahead, then the write check): the walk of the tree,
    as costly as a point select, is done once per parsed statement."""
    (node,) = parse("SELECT a FROM t WHERE a = 1")
    with mock.patch.object(exp.Expression, "find", autospec=True, return_value=None) as find:
        for _ in range(3):
            assert reads_only(node)
    assert find.call_count == 1
