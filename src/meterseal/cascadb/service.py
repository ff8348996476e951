"""CascaDB as a running service: attested, over the secure KVS, serving JSON and PostgreSQL.

`meterseal cascadb serve` builds `CascadbOptions` and calls `serve_cascadb`: attest to the CAS
(`service_trust.attest_cascadb`: no attestation, no key, no server), open the KVS store over
the storage nodes (local directories or NATS, as `meterseal kvs serve` does) with only its
bucket's key, or keep the database in memory, and serve under the runtime's lifecycle:

* the paper's JSON API (`http_api`, `POST /v1/sql`) over HTTPS,
* the PostgreSQL protocol (`pgwire`), TLS required before a password is asked,

both with the TLS identity the CAS released (TLS ends inside the worker) and the accounts'
identities (`identities`: bearer tokens and API keys over HTTP, the same or the account's
password over the protocol; operators and administrators only). The admin endpoint serves
/readyz (503 while the storage nodes cannot take writes of the default policy or the accounts'
store does not answer) and /metrics. Every statement is logged by caller and shape only
(`statement_log`). One CascaDB per bucket: the engine's lock lives in this process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterseal.cascadb.engine import Database
from meterseal.cascadb.http_api import create_app
from meterseal.cascadb.identities import WireLogin
from meterseal.cascadb.kv import MemoryKv, OrderedKv
from meterseal.cascadb.kvs_adapter import KvsOrderedKv, LoopThread
from meterseal.cascadb.pgwire import PgServer
from meterseal.cascadb.service_trust import CascadbSecrets, attest_cascadb
from meterseal.errors import ConfigurationError
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.service import StoreLayout, open_store
from meterseal.kvs.service_health import NodeHealth
from meterseal.runtime.address import format_address, parse_address
from meterseal.runtime.http import HttpAppService
from meterseal.runtime.lifecycle import serve_stage
from meterseal.runtime.readiness import Readiness
from meterseal.runtime.tls import server_context

HTTP_PORT = 7472
PG_PORT = 5433
Log = Callable[[str], None]


@dataclass(frozen=True)
class CascadbOptions:
    """What `meterseal cascadb serve` was asked for."""

    deployment: Path
    cas_url: str
    accounts: str  # the store URL holding the accounts (the deployment's store)
    layout: StoreLayout | None  # None: the database lives in memory
    bucket: str = "cascadb"
    default_policy: str = "ec:6+2"
    listen: str = f"127.0.0.1:{HTTP_PORT}"
    pg_listen: str = f"127.0.0.1:{PG_PORT}"
    admin: str | None = "127.0.0.1:0"
    passphrase: bytes | None = field(default=None, repr=False)
    # a PostgreSQL session idle in a transaction block or holding the write lock is ended
    # (None: no limit)
    idle_in_transaction_timeout: float | None = 60.0


class CascadbService:
    """The JSON API and the PostgreSQL protocol over one Database, as one runtime `Stage`."""

    def __init__(self, http: HttpAppService, pg: PgServer, readiness: Readiness) -> None:
        self.name = "cascadb"
        self.http = http
        self.pg = pg
        self.readiness = readiness
        self.metrics = http.metrics
        self.metrics.bridge(
            "meterseal_cascadb_pg",
            "PostgreSQL protocol: sessions, refused logins, statements, failed statements",
            "kind",
            lambda: pg.counts,
        )

    async def start(self) -> dict[str, str]:
        """Listen on both; their addresses."""
        urls = await self.http.start()
        await self.pg.start()
        urls["cascadb-pg"] = f"postgresql://{format_address(self.pg.host, self.pg.port)}"
        return urls

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until stopped."""
        await stop.wait()

    async def stop(self) -> None:
        """Close the protocol's connections, finish running requests."""
        await self.pg.close()
        await self.http.stop()

    def counters(self) -> dict[str, Any]:
        """The API's and the protocol's counters."""
        return {**self.http.counters(), "cascadb-pg": dict(self.pg.counts)}


@dataclass
class _KvsDatabase:
    """The bucket on the KVS, the loop its store runs on, and its nodes' health watch."""

    kv: OrderedKv
    health: NodeHealth | None = None
    close: Callable[[], None] = lambda: None


async def _open_kvs(options: CascadbOptions, secrets: CascadbSecrets) -> _KvsDatabase:
    layout, key = options.layout, secrets.bucket_key
    if layout is None:
        return _KvsDatabase(MemoryKv())
    if key is None:  # never silently in memory when the KVS was asked for
        raise ConfigurationError(f"no key of bucket {options.bucket} was released to CascaDB")
    bucket = options.bucket

    def bucket_key(name: str) -> bytes:
        if name != bucket:  # the CAS released this bucket's key only
            raise ConfigurationError(f"CascaDB holds the key of bucket {bucket}, not {name}")
        return key

    policy = parse_policy(options.default_policy)
    runner = LoopThread()  # the engine is synchronous; the store's coroutines run here
    try:
        opening = open_store(layout, b"", policy, os.urandom, bucket_key=bucket_key)
        opened = await asyncio.to_thread(runner.run, opening)
    except BaseException:
        runner.close()
        raise
    health = NodeHealth(opened.store.nodes, policy, every=1.0)
    watching = asyncio.run_coroutine_threadsafe(health.watch(), runner.loop)

    async def closing() -> None:
        await opened.close()

    def close() -> None:
        watching.cancel()
        try:
            runner.run(closing())
        finally:
            runner.close()

    try:
        await asyncio.to_thread(runner.run, health.probe())
        kv = await asyncio.to_thread(KvsOrderedKv, opened.store, bucket, runner)  # recovers
    except BaseException:
        close()
        raise
    return _KvsDatabase(kv, health, close)


@contextmanager
def _accounts(options: CascadbOptions) -> Iterator[tuple[Any, Readiness]]:
    """The accounts' authenticator over the deployment's store, and that store's readiness."""
    from meterseal.accounts.authn import AccountAuthenticator
    from meterseal.accounts.credentials import TokenSigner, token_key
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    signer = TokenSigner(token_key(options.deployment, options.passphrase))
    with Store.open(options.accounts) as store:
        yield AccountAuthenticator(AccountStore(store), signer), Readiness(store.not_ready)


async def serve_cascadb(
    options: CascadbOptions,
    *,
    secrets: CascadbSecrets | None = None,
    announce: Log = lambda line: print(line, flush=True),
    log: Log = lambda line: None,
    stop: asyncio.Event | None = None,
) -> None:
    """Attest (unless `secrets` are given), open the database, serve until stopped; statement
    shapes go to `log`."""
    http_address = parse_address(options.listen, HTTP_PORT)  # both refused before attesting
    pg_address = parse_address(options.pg_listen, PG_PORT)
    if secrets is None:
        bucket = None if options.layout is None else options.bucket
        secrets = await asyncio.to_thread(
            attest_cascadb,
            options.cas_url,
            options.deployment,
            bucket=bucket,
            passphrase=options.passphrase,
        )
    announce(f"keys from {secrets.provenance}")
    opened = await _open_kvs(options, secrets)
    try:
        if options.layout is None:
            announce("database in memory: gone when the server stops")
        else:
            announce(f"database in bucket {options.bucket} on {options.layout.describe()}")
        with _accounts(options) as (authenticator, readiness):
            if opened.health is not None:
                readiness.add(opened.health.reason)
            database = Database(opened.kv)
            tls = server_context(secrets.tls)
            app = create_app(database, authenticator, log=log)
            http = HttpAppService("cascadb", app, str(http_address), HTTP_PORT, tls)
            pg = PgServer(
                database,
                host=pg_address.host,
                port=pg_address.port,
                authenticate=WireLogin(authenticator),
                tls=tls,
                require_tls=True,
                log=log,
                idle_in_transaction_timeout=options.idle_in_transaction_timeout,
            )
            service = CascadbService(http, pg, Readiness(*readiness.checks, every=1.0))
            await serve_stage(service, admin=options.admin, announce=announce, stop=stop)
    finally:
        await asyncio.to_thread(opened.close)
