"""The apps page against a router served on NATS (`bills serve --router-nats`'s path)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from meterseal.dissemination.customers import customer_pseudonyms
from meterseal.dissemination.nats_transport import serve_node
from meterseal.dissemination.node import RouterNode
from meterseal.portal.app import create_portal_app
from meterseal.portal.consent import RouterConsent, nats_channel
from meterseal.storage import Store
from tests.portal.conftest import Portal
from tests.portal.test_apps import ANON, KEY, Router
from tests.portal.test_pages import csrf_of, signed_in
from tests.services import require_service

pytestmark = pytest.mark.services
NATS_URL = os.environ.get("MS_NATS_URL", "nats://127.0.0.1:4222")


async def _connect() -> Any:
    import nats

    return await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)


@pytest.fixture
def on_nats(unique_name: str) -> Iterator[tuple[Router, str]]:
    """A router answering on NATS in a thread of its own; (it, its namespace)."""

    async def probe() -> None:
        await (await _connect()).close()

    require_service("NATS", NATS_URL, lambda: asyncio.run(probe()))
    namespace = f"test.portal.{unique_name}"
    router = Router()
    router.node = RouterNode(
        router.world.authority, router.world.router, KEY, os.urandom, namespace=namespace
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    nc = asyncio.run_coroutine_threadsafe(_connect(), loop).result(10)
    try:
        asyncio.run_coroutine_threadsafe(serve_node(nc, router.node), loop).result(10)
        yield router, namespace
    finally:
        asyncio.run_coroutine_threadsafe(nc.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_consent_through_a_router_on_nats(portal: Portal, on_nats: tuple[Router, str]) -> None:
    router, namespace = on_nats
    customer, account, _ = portal.customer(0)
    with Store.open_read_only(portal.month.url) as store:
        channel = nats_channel(NATS_URL, namespace)
        consent = RouterConsent(channel, KEY, ANON, store, NATS_URL)
        portal.app = create_portal_app(
            portal.bills, portal.people.authenticator, portal.accounts, None, consent
        )
        mine = [m.pseudonym for m in customer_pseudonyms(store, ANON, customer)]
        client: TestClient = signed_in(portal, account)
        page = client.get("/portal/apps")
        assert page.status_code == 200, page.text
        form = {"app": "myapp", "action": "grant", "csrf": csrf_of(page.text)}
        done = client.post("/portal/apps", data=form)
        assert "myapp now receives your raw readings" in done.text
        assert all(router.world.authority.consent.get(p) == {"myapp"} for p in mine)
        form["action"] = "revoke"
        done = client.post("/portal/apps", data=form)
        assert "myapp no longer receives your readings" in done.text
        assert all(not router.world.authority.consent.get(p) for p in mine)
