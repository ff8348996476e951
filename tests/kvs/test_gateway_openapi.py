"""The gateway answers what its OpenAPI description says: schemathesis, in-process, bounded."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.kvs.gateway_keys import EVERY_BUCKET, KeyTable, Right, Scope
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.service import StoreLayout, build_gateway, gateway_state
from tests.kvs.store_fixtures import memory_store

pytest.importorskip("schemathesis")
from tests.openapi_check import conforms

SCOPES = {
    "reader": Scope("meters", "", frozenset((Right.READ,))),
    "writer": Scope("meters", "", frozenset((Right.READ, Right.WRITE))),
    "operator": Scope(EVERY_BUCKET, "", frozenset(Right)),
}


@pytest.mark.parametrize("who", [None, *SCOPES])
def test_the_gateway_api(tmp_path: Any, who: str | None) -> None:
    store, _nodes, _catalog = memory_store(5)
    layout, policy = StoreLayout(tmp_path, 5), parse_policy("ec:3+2")
    table, headers = KeyTable(), {}
    if who is not None:
        table, new = table.add(SCOPES[who], who, 1.0, os.urandom)
        headers = {"Authorization": f"Bearer {new.secret}"}
    asyncio.run(gateway_state(store, layout, policy).save_keys(table))
    app = build_gateway(store, layout, policy, KvsMetrics())
    assert conforms(app, headers) == []
