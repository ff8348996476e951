"""SQL text into parsed statements, and what a statement asks of its transaction."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType  # type: ignore[attr-defined]

from meterseal.cascadb.errors import ProgrammingError

DIALECT = "sqlite"
_SAVEPOINT = re.compile(r"\s*(SAVEPOINT|RELEASE)\s+(?:SAVEPOINT\s+)?(\"?\w+\"?)\s*;?\s*", re.I)
_ISOLATION = re.compile(
    r"\s*SET\s+(?:SESSION\s+|LOCAL\s+)?(?P<scope>SESSION\s+CHARACTERISTICS\s+AS\s+TRANSACTION"
    r"|TRANSACTION|default_transaction_isolation)\b[^']*?(?:ISOLATION\s+LEVEL\s+|=\s*|TO\s+)'?"
    r"(?P<level>\w+)",
    re.I,
)
_READS_ONLY = "meterseal_reads_only"  # key of `reads_only`'s answer in a node's meta
QUERIES = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)


def is_query(node: exp.Expression) -> bool:
    """Whether a parsed statement only reads (a SELECT or a set operation of them)."""
    return isinstance(node, QUERIES)


def reads_only(node: exp.Expression) -> bool:
    """Whether a statement may run as a reader: a query without FOR UPDATE or FOR SHARE (which
    ask that what they read stay as read until the transaction ends: the write lock)."""
    known = node.meta.get(_READS_ONLY)
    if known is None:
        # Walking the whole tree for a lock clause cost as much as running a point select;
        # parsed statements are cached by text, so the answer is kept on the node.
        known = is_query(node) and node.find(exp.Lock) is None
        node.meta[_READS_ONLY] = known
    return bool(known)


def asks_serializable(node: exp.Expression) -> bool:
    """Whether a BEGIN asks more than read committed: PostgreSQL's ISOLATION LEVEL
    SERIALIZABLE or REPEATABLE READ, SQLite's BEGIN IMMEDIATE or EXCLUSIVE (the write lock)."""
    modes = " ".join(str(m) for m in node.args.get("modes") or []).upper()
    locking = str(node.args.get("this") or "").upper() in ("IMMEDIATE", "EXCLUSIVE")
    return locking or "SERIALIZABLE" in modes or "REPEATABLE" in modes


def number_placeholders(sql: str, dialect: str = DIALECT) -> str:
    """`?` placeholders rewritten as `$1`, `$2`, ... in the order they appear."""
    if "?" not in sql or dialect != DIALECT:
        return sql
    tokens = [
        t
        for t in sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
        if t.token_type == TokenType.PLACEHOLDER and t.text == "?"
    ]
    for number, token in reversed(list(enumerate(tokens, start=1))):
        sql = sql[: token.start] + f"${number}" + sql[token.end + 1 :]
    return sql


def parse(sql: str, dialect: str = DIALECT) -> list[exp.Expression]:
    """The statements of `sql` in `dialect` (sqlglot's); ProgrammingError on bad syntax."""
    marked = _SAVEPOINT.fullmatch(sql)
    if marked is not None:  # sqlglot would parse it as a Command too, warning each time
        verb, name = marked.group(1).upper(), marked.group(2)
        return [exp.Command(this=verb, expression=exp.Literal.string(name))]
    try:
        statements = sqlglot.parse(number_placeholders(sql, dialect), read=dialect)
    except (ParseError, TokenError) as exc:
        raise ProgrammingError(f"syntax error: {exc}") from exc
    return [s for s in statements if isinstance(s, exp.Expression)]


def isolation_set(sql: str) -> tuple[bool, bool] | None:
    """For PostgreSQL's SET of an isolation level (SET TRANSACTION ..., SET SESSION
    CHARACTERISTICS AS TRANSACTION ..., SET default_transaction_isolation): whether it holds for
    the session (else the open transaction) and whether it asks more than read committed."""
    found = _ISOLATION.match(sql)
    if found is None:
        return None
    level = found.group("level").upper()
    return found.group("scope").upper() != "TRANSACTION", level in ("SERIALIZABLE", "REPEATABLE")
