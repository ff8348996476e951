"""kvs export and audit --from-kvs as an operator and the authority run them, over a gateway."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from meterseal.kvs.gateway import create_gateway_app
from meterseal.kvs.gateway_auth import KvsAuthenticator
from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.kvs.gateway_keys import KeyTable, Right, Scope
from meterseal.kvs.gateway_state import GatewayState
from meterseal.kvs.policy import Replication, parse_policy
from meterseal.runtime.http import ThreadedServer
from meterseal.storage import Store
from tests.billing.conftest import PERIOD
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run
from tests.kvs.store_fixtures import memory_store
from tests.kvs.test_export import town  # noqa: F401 - the fixture


@contextmanager
def originals_gateway(*rights: Right) -> Iterator[tuple[str, str]]:
    """A gateway over nine memory nodes (hybrid:6+2) and one key on bucket 'originals'."""
    store, _nodes, _catalog = memory_store(9, chunk_size=64 * 1024)
    state = GatewayState(store, parse_policy("hybrid:6+2"), Replication(3))
    scope = Scope("originals", "", frozenset(rights))
    table, new = KeyTable().add(scope, "kvs export test", 1.0, os.urandom)
    asyncio.run(state.save_keys(table))
    metrics = KvsMetrics(CollectorRegistry())
    app = create_gateway_app(store, state, KvsAuthenticator(state.key_table), metrics)
    with ThreadedServer(app) as url:
        yield url, new.secret


def export(*args: str, code: int = 0) -> str:
    """`meterseal kvs export ARGS`, asserting its exit code; its output unwrapped."""
    return run("kvs", "export", *args, code=code)


def test_export_then_audit_from_the_kvs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment, store, fleet = month_on_disk(tmp_path, 2)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-tou")
    with originals_gateway(Right.READ, Right.WRITE) as (url, key):
        monkeypatch.setenv("MS_KVS_KEY", key)
        done = export("--month", "2026-10", "--gateway", url, "--store", store)
        assert "2026-10: 2 customer objects, 192 signed originals, 0 unsigned imports" in done
        assert "index originals/originals-index/2026-10" in done
        where = ["-d", str(deployment), "--store", store]
        from_kvs = run("audit", *where, "--from-kvs", url)
        assert "2 of 2 bills countersigned" in from_kvs
        assert "warning" not in from_kvs
        # The store loses a billed reading after the export: the store's audit finds it
        # missing, the audit from the KVS reads the exported month and still countersigns.
        with Store.open(store) as db, db.transaction() as connection:
            connection.execute(
                sa.text("DELETE FROM signed_originals WHERE meter_id = :m AND counter = :c"),
                {"m": fleet[0].key.meter_id, "c": PERIOD.start // 900 + 7},
            )
        assert "missing" in run("audit", *where, code=1)
        assert "2 of 2 bills countersigned" in run("audit", *where, "--from-kvs", url)


def test_export_needs_the_key_and_a_month(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MS_KVS_KEY", raising=False)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert "set MS_KVS_KEY" in export("--month", "2026-10", "--store", store, code=2)
    monkeypatch.setenv("MS_KVS_KEY", "kvk_x_y")
    assert "not YYYY-MM" in export("--month", "2026-13", "--store", store, code=2)


def test_a_read_only_key_cannot_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _deployment, store, _fleet = month_on_disk(tmp_path, 1)
    with originals_gateway(Right.READ) as (url, key):
        monkeypatch.setenv("MS_KVS_KEY", key)
        refused = export("--month", "2026-10", "--gateway", url, "--store", store, code=2)
    assert "the gateway answered 403: not allowed" in refused


def test_fraud_rank_from_the_kvs_is_the_stores_ranking(
    town: str,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    period = ["--from", "2026-10-20", "--days", "12", "--tz", "UTC"]
    with originals_gateway(Right.READ, Right.WRITE) as (url, key):
        monkeypatch.setenv("MS_KVS_KEY", key)
        done = export("--month", "2026-10", "--gateway", url, "--store", town)
        assert "2026-10: 16 customer objects" in done
        from_kvs = tmp_path / "kvs.csv"
        ranked = run("fraud", "rank", "--from-kvs", url, *period, "--out", str(from_kvs))
        assert "ranking:" in ranked
        assert "(16 customers)" in ranked
        none = run("fraud", "rank", "--from-kvs", url, "--from", "2026-08-01", "--days", "3",
                   "--tz", "UTC", "--out", str(tmp_path / "none.csv"), code=2)  # fmt: skip
        assert "no readings" in none
        assert "the KVS has no export of 2026-08" in none
    from_store = tmp_path / "store.csv"
    run("fraud", "rank", "--store", town, *period, "--out", str(from_store))
    assert from_kvs.read_text() == from_store.read_text()
    assert len(from_kvs.read_text().splitlines()) == 1 + 16
