"""CascaDB's JSON-over-HTTP API (the paper's interface): SQL in, JSON rows out.

`POST /v1/sql` with `{"sql": "...", "params": [...]}` runs every statement of `sql` as one
transaction (all or nothing; one of only queries is a reader: it reads what is committed and
never waits for an open write transaction) and answers the last statement's `columns`,
`rows`, `rowcount` and `command`. Values: numbers as JSON numbers except DECIMAL ones
(strings, exact), bytes as `\\x`-hex strings, timestamps in ISO 8601.
Operators and administrators may call it (the runtime's rule); statements are counted by kind
and logged by their caller and shape only, every value replaced (`statement_log`). `meterseal
cascadb serve` (cascadb.service) serves it attested, over TLS, with the accounts' identities.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from meterseal.cascadb.engine import Database, Result
from meterseal.cascadb.errors import Error, NotSupportedError, OperationalError
from meterseal.cascadb.identities import SQL_ROLES
from meterseal.cascadb.statement_log import statement_shape
from meterseal.runtime.auth import AnyRole, Authenticator, access, identity_of
from meterseal.runtime.http import Problem, service_app
from meterseal.runtime.refusals import Refusal, refusing

SQL_CALLERS = AnyRole(SQL_ROLES)
REFUSED_SQL: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The SQL was refused: syntax, names, constraints."},
    422: {"model": Problem, "description": "Malformed body, or SQL CascaDB does not support."},
}
SQL_REFUSALS = (  # a subclass of Error before Error
    Refusal(OperationalError, 503, "unavailable"),
    Refusal(NotSupportedError, 422, "unsupported"),
    Refusal(Error, 400, "refused"),
)
MAX_SQL = 1_000_000
# A body of the longest SQL, escaped in JSON, and its parameters: over the runtime's default.
MAX_SQL_BODY = 16 << 20


class Statement(BaseModel):
    """SQL and its positional parameters (`?` or `$1`)."""

    sql: str = Field(min_length=1, max_length=MAX_SQL)
    params: list[Any] = Field(default_factory=list, max_length=100_000)


class Answer(BaseModel):
    """The last statement's result."""

    command: str
    columns: list[str] | None
    rows: list[list[Any]]
    rowcount: int


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)  # no exponent
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _run(database: Database, statement: Statement, log: Callable[[str], None], who: str) -> Result:
    session = database.session(autocommit=False)
    try:
        result = Result()
        statements = session.statements(statement.sql)
        session.read_ahead(statements)  # only queries: a reader, no wait for the writer
        for parsed in statements:
            log(f"{who}: {statement_shape(parsed, session.dialect)}")
            result = session.run_statement(parsed, statement.params)
        session.commit()
        return result
    finally:
        session.rollback()


def create_app(
    database: Database,
    authenticator: Authenticator,
    log: Callable[[str], None] | None = None,
) -> FastAPI:
    """The API over `database`; `authenticator` tells who calls, `log` takes statement shapes."""
    counts: Counter[str] = Counter()
    log_line = log or (lambda line: None)
    app = service_app(
        "meterseal CascaDB",
        "SQL over the secure key-value store: statements in, JSON rows out.",
        counts,
        lambda: dict(counts),
    )
    app.state.authenticator = authenticator

    @app.post(
        "/v1/sql",
        summary="Run SQL as one transaction",
        dependencies=[access(SQL_CALLERS)],
        responses=REFUSED_SQL,
        max_body_size=MAX_SQL_BODY,
    )
    async def run_sql(statement: Statement, request: Request) -> Answer:
        who = identity_of(request).subject or "?"
        run = functools.partial(_run, database, statement, log_line, who)
        result = await refusing(run, SQL_REFUSALS, counts)
        counts[result.command.lower() or "statement"] += 1
        rows = [[_json(v) for v in row] for row in result.rows]
        return Answer(
            command=result.command, columns=result.columns, rows=rows, rowcount=result.rowcount
        )

    return app
