"""The PostgreSQL protocol's shutdown under a statement still running in its worker thread: the
session is rolled back after the statement, never beside it (pgwire.py, pgwire_queries.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlglot import exp

from meterseal.cascadb import engine, executor
from tests.cascadb.pg_client import Running, logged_in, message


class Gate:
    """An INSERT's execution held inside the engine (its transaction begun, the write lock
    taken) until `go`; what happened, in order."""

    def __init__(self, running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
        self.running = running
        self.started, self.go, self.done = threading.Event(), threading.Event(), threading.Event()
        self.events: list[str] = []
        self.locked_while_running: list[bool] = []
        run, close = executor.run, engine.Session.close  # engine calls the executor's run

        def held_run(node: exp.Expression, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(node, exp.Insert):
                return run(node, *args, **kwargs)
            try:
                self.started.set()
                assert self.go.wait(30)  # a safety net: the test sets it
                result = run(node, *args, **kwargs)
                self.locked_while_running.append(running.database._lock.locked())
                self.events.append("statement ended")
                return result
            finally:
                self.done.set()

        def closing(session: engine.Session) -> None:
            self.events.append("session closed")
            close(session)

        monkeypatch.setattr(engine, "run", held_run)
        monkeypatch.setattr(engine.Session, "close", closing)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    running = Running()
    running.database.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
    try:
        yield Gate(running, monkeypatch)
    finally:
        running.stop()


def test_the_loops_end_rolls_a_session_back_after_its_running_statement(gate: Gate) -> None:
    # At the event loop's end (asyncio.run cancels every task) the session was rolled back at
    # once, beside its statement still running in a worker thread: the write lock was released
    # under the statement, which went on writing as another session could take the lock
    running = gate.running
    with logged_in(running) as sock:
        sock.sendall(message(b"Q", b"INSERT INTO t VALUES (1)\x00"))
        assert gate.started.wait(30)

        def end_of_loop() -> None:
            for task in asyncio.all_tasks(running.loop):
                task.cancel()
            running.loop.call_soon(gate.go.set)  # after the cancelled tasks' next step

        running.loop.call_soon_threadsafe(end_of_loop)
        assert gate.done.wait(30)
        asyncio.run_coroutine_threadsafe(running.server.close(), running.loop).result(30)
    assert gate.events == ["statement ended", "session closed"]
    assert gate.locked_while_running == [True]
    assert not running.database._lock.locked()  # released once, by the statement's commit
    assert running.database.execute("SELECT k FROM t").rows == [(1,)]


def test_closing_the_server_waits_for_a_running_statement(gate: Gate) -> None:
    # close() returned with the statement still running (Python 3.11's wait_closed waits for no
    # connection): the service then closed the store under it, and the loop's end cancelled it
    running = gate.running
    with logged_in(running) as sock:
        sock.sendall(message(b"Q", b"INSERT INTO t VALUES (2)\x00"))
        assert gate.started.wait(30)

        async def close() -> None:
            asyncio.get_running_loop().call_soon(gate.go.set)  # once close() has begun
            await running.server.close()
            gate.events.append("close returned")

        asyncio.run_coroutine_threadsafe(close(), running.loop).result(30)
    assert gate.events == ["statement ended", "session closed", "close returned"]
    assert gate.locked_while_running == [True]
    assert not running.database._lock.locked()
