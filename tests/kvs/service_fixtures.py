"""`meterseal kvs serve` in a thread of the test: `serve_gateway` with given secrets, no CAS."""

from __future__ import annotations

import asyncio
import os
import threading

from meterseal.kvs.gateway_keys import Right, Scope
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.service import (
    GatewayOptions,
    StoreLayout,
    gateway_state,
    open_store,
    serve_gateway,
)
from meterseal.kvs.service_trust import GatewaySecrets

MASTER = os.urandom(32)


class Running:
    """`serve_gateway` on its own event loop in a thread, with given secrets (no CAS here)."""

    def __init__(self, options: GatewayOptions, master: bytes = MASTER) -> None:
        self.options, self.master, self.url, self.admin_url = options, master, "", ""
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()

        def announce(line: str) -> None:
            if line.startswith("listening kvs "):
                self.url = line.split()[-1]
            if line.startswith("listening admin "):
                self.admin_url = line.split()[-1]
            if line.startswith("ready kvs"):
                self.ready.set()

        try:
            secrets = GatewaySecrets(self.master, None, "test")
            await serve_gateway(self.options, secrets=secrets, announce=announce, stop=self.stop)
        finally:
            self.ready.set()

    def admin(self) -> str:
        """The admin endpoint's URL (announced as `listening admin URL`)."""
        return self.admin_url

    def __enter__(self) -> str:
        self.thread.start()
        self.ready.wait(60)
        assert self.url, "the gateway did not start"
        return self.url

    def __exit__(self, *_exc: object) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


def add_key(layout: StoreLayout, scope: Scope, master: bytes = MASTER) -> str:
    """A new API key of `scope` in the layout's key table (as `kvs keys add` does)."""

    async def add() -> str:
        policy = parse_policy("rep:1")
        opened = await open_store(layout, master, policy, os.urandom)
        try:
            state = gateway_state(opened.store, layout, policy)
            table, new = (await state.key_table()).add(scope, "test", 1.0, os.urandom)
            await state.save_keys(table)
            return new.secret
        finally:
            await opened.close()

    return asyncio.run(add())


OPERATOR = Scope("*", "", frozenset(Right))
