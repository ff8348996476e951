"""CascaDB as a client of a served KVS gateway (memory nodes) with a bucket-scoped API key."""

from __future__ import annotations

import pytest

import meterseal.cascadb as cascadb
from meterseal.cascadb.gateway_kv import GatewayOrderedKv
from meterseal.cascadb.kv import MemoryKv
from meterseal.kvs.gateway_client import GatewayClient, GatewayError
from tests.kvs.gateway_fixtures import serve_gateway


def test_sql_through_the_gateway_answers_as_in_memory() -> None:
    with (
        serve_gateway() as gateway,
        GatewayClient(gateway.url, gateway.keys["meters-rw"]) as client,
    ):
        kv = GatewayOrderedKv(client, "meters")
        try:
            answers = []
            for store in (kv, MemoryKv()):
                connection = cascadb.connect(store, autocommit=True)
                connection.execute(
                    "CREATE TABLE reading(meter TEXT, ts INTEGER, kwh REAL, "
                    "PRIMARY KEY (meter, ts))"
                )
                connection.execute("CREATE INDEX reading_kwh ON reading(kwh)")
                rows = [(f"m{m}", t, (m * t) % 5 / 4) for m in (9, 10) for t in range(6)]
                connection.execute(
                    "INSERT INTO reading VALUES " + ", ".join("(?, ?, ?)" for _ in rows),
                    [v for row in rows for v in row],
                )
                connection.execute("DELETE FROM reading WHERE meter = 'm9' AND ts > 3")
                answers.append(
                    [
                        connection.execute("SELECT ts FROM reading WHERE meter = 'm10'").fetchall(),
                        connection.execute(
                            "SELECT meter, ts FROM reading WHERE kwh = 0"
                        ).fetchall(),
                        connection.execute(
                            "SELECT kwh FROM reading WHERE meter = ? AND ts = ?", ["m10", 3]
                        ).fetchall(),
                    ]
                )
            assert answers[0] == answers[1]
            assert answers[0][0] == [(t,) for t in range(6)]
            listed = [o["key"] for o in client.list_all("meters")]
            assert listed == sorted(listed)
            assert all(bytes.fromhex(name) for name in listed)  # hex names only: no batch left
        finally:
            kv.close()


def test_a_read_only_key_cannot_write() -> None:
    with (
        serve_gateway() as gateway,
        GatewayClient(gateway.url, gateway.keys["meters-read"]) as client,
    ):
        kv = GatewayOrderedKv(client, "meters")
        try:
            connection = cascadb.connect(kv, autocommit=True)
            with pytest.raises(cascadb.OperationalError, match="the KVS gateway failed") as caught:
                connection.execute("CREATE TABLE t(a INTEGER PRIMARY KEY)")
            assert isinstance(caught.value.__cause__, GatewayError)
            assert caught.value.__cause__.status == 403
            assert list(client.list_all("meters")) == []
        finally:
            kv.close()
