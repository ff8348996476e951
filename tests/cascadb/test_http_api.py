"""CascaDB's JSON-over-HTTP API: one transaction a request, JSON values, the runtime's rules."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from meterseal.cascadb import Database, MemoryKv
from meterseal.cascadb.http_api import MAX_SQL_BODY, create_app
from meterseal.runtime.auth import ANONYMOUS, Identity, check_access

OPERATOR = Identity("mdc", frozenset({"operator"}))
CUSTOMER = Identity("alice", frozenset({"customer"}), customer_id="CUST-A")


def _app() -> tuple[FastAPI, Database]:
    tokens = {"op": OPERATOR, "cust": CUSTOMER}

    async def authenticate(request: Request) -> Identity:
        return tokens.get(request.headers.get("authorization", ""), ANONYMOUS)

    database = Database(MemoryKv())
    return create_app(database, authenticate), database


def _post(app: FastAPI, body: dict[str, Any], token: str = "op") -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.post("/v1/sql", json=body, headers={"authorization": token})

    return asyncio.run(call())


def test_sql_in_json_rows_out() -> None:
    app, _ = _app()
    check_access(app)
    created = _post(
        app,
        {
            "sql": "CREATE TABLE reading(meter TEXT, ts INTEGER, kwh DECIMAL(8, 3), raw BLOB, "
            "PRIMARY KEY (meter, ts)); "
            "INSERT INTO reading VALUES (?, ?, ?, ?), ('m1', 2, 0.25, NULL)",
            "params": ["m1", 1, "1.125", None],
        },
    )
    assert created.status_code == 200, created.text
    assert created.json() == {"command": "INSERT", "columns": None, "rows": [], "rowcount": 2}
    answer = _post(
        app,
        {"sql": "SELECT ts, kwh, raw FROM reading WHERE meter = ? ORDER BY ts", "params": ["m1"]},
    )
    assert answer.json() == {
        "command": "SELECT",
        "columns": ["ts", "kwh", "raw"],
        "rows": [[1, "1.125", None], [2, "0.250", None]],  # DECIMAL(8, 3): its scale
        "rowcount": -1,
    }


def test_a_request_is_one_transaction() -> None:
    app, database = _app()
    _post(app, {"sql": "CREATE TABLE t(a INTEGER PRIMARY KEY)"})
    refused = _post(app, {"sql": "INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)"})
    assert refused.status_code == 400
    assert "UNIQUE constraint failed" in refused.json()["detail"]
    assert database.execute("SELECT COUNT(*) FROM t").rows == [(0,)]
    assert _post(app, {"sql": "SELECT 1 FROM a RIGHT JOIN b ON 1"}).status_code == 422


def test_only_operators_and_administrators_run_sql() -> None:
    app, _ = _app()
    assert _post(app, {"sql": "SELECT 1"}, token="").status_code == 401
    assert _post(app, {"sql": "SELECT 1"}, token="cust").status_code == 403


def test_a_body_over_the_sql_cap_is_refused_before_the_caller_is_asked() -> None:
    app, _ = _app()
    # Over the runtime's 1 MiB for parsed bodies: the SQL route takes more (MAX_SQL_BODY).
    wide = _post(app, {"sql": "SELECT length(?)", "params": ["a" * 2_000_000]})
    assert wide.json()["rows"] == [[2_000_000]]
    # FastAPI reads a body before the guard runs: an anonymous one over the cap is not read.
    over = _post(app, {"sql": "SELECT 1", "params": ["a" * MAX_SQL_BODY]}, token="")
    assert over.status_code == 413
    assert over.json() == {"detail": f"body over {MAX_SQL_BODY} bytes"}


def test_the_api_answers_as_its_openapi_says() -> None:
    pytest.importorskip("schemathesis")
    from tests.openapi_check import conforms

    app, _ = _app()
    assert conforms(app) == []
    assert conforms(app, {"authorization": "op"}) == []


def test_statements_are_logged_by_caller_and_shape_without_values() -> None:
    logged: list[str] = []

    async def authenticate(request: Request) -> Identity:
        return OPERATOR

    app = create_app(Database(MemoryKv()), authenticate, log=logged.append)
    _post(app, {"sql": "CREATE TABLE r(meter TEXT PRIMARY KEY, kwh DECIMAL(8, 3))"})
    _post(
        app,
        {
            "sql": "INSERT INTO r VALUES (?, 17.125); SELECT kwh FROM r WHERE meter = 'CUST-LIT-4'",
            "params": ["CUST-PARAM-3"],
        },
    )
    assert logged[1:] == [
        "mdc: INSERT INTO r VALUES ($1, ?)",
        "mdc: SELECT kwh FROM r WHERE meter = ?",
    ]
    assert not any(v in "\n".join(logged) for v in ("CUST-LIT-4", "CUST-PARAM-3", "17.125"))


def test_a_request_of_queries_reads_what_is_committed_while_a_writer_is_open() -> None:
    app, database = _app()
    created = _post(app, {"sql": "CREATE TABLE t(k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1)"})
    assert created.status_code == 200, created.text
    database.lock_timeout = 0.2  # a request that waits for the write lock fails fast (503)
    writer = database.session(autocommit=False)  # another client, mid-transaction
    writer.execute("INSERT INTO t VALUES (2)")
    read = _post(app, {"sql": "SELECT count(*) FROM t; SELECT k FROM t ORDER BY k"})
    assert read.status_code == 200, read.text
    assert read.json()["rows"] == [[1]]  # committed data only, without waiting
    writes = _post(app, {"sql": "SELECT count(*) FROM t; INSERT INTO t VALUES (3)"})
    assert writes.status_code == 503  # a request that writes waits for the open writer
    writer.commit()
    assert _post(app, {"sql": "SELECT k FROM t ORDER BY k"}).json()["rows"] == [[1], [2]]
