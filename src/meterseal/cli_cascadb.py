"""`meterseal cascadb sql|serve`: SQL over a bucket of the secure KVS, through its gateway.

CascaDB holds only the gateway's API key for its bucket (MS_KVS_KEY, read and write rights,
`meterseal kvs keys add --bucket cascadb --rights rw`); the gateway keeps the keys and seals.
`serve` speaks the PostgreSQL protocol, so psql and psycopg connect unchanged; with
MS_CASCADB_PASSWORD set, clients must give that password (cleartext in the protocol: use it on
loopback or behind TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from meterseal.cli_common import console
from meterseal.errors import ConfigurationError

cascadb_app = typer.Typer(help="CascaDB: SQL over the secure KVS.", no_args_is_help=True)
DEFAULT_GATEWAY = "http://127.0.0.1:7470"
Gateway = Annotated[str, typer.Option("--gateway", help="KVS gateway URL")]
Bucket = Annotated[str, typer.Option("--bucket", help="the bucket holding the database")]
KeyEnv = Annotated[str, typer.Option(help="environment variable holding the API key (kvk_…)")]
CaFile = Annotated[Path | None, typer.Option("--ca", help="CA certificate of an https gateway")]


@contextlib.contextmanager
def _store(gateway: str, bucket: str, key_env: str, ca: Path | None) -> Iterator[object]:
    from meterseal.cascadb.gateway_kv import GatewayOrderedKv
    from meterseal.kvs.gateway_client import GatewayClient

    key = os.environ.get(key_env, "")
    if not key:
        raise ConfigurationError(
            f"set {key_env} to the bucket's API key (`meterseal kvs keys add`)"
        )
    verify: ssl.SSLContext | bool = True
    if ca is not None:
        verify = ssl.create_default_context(cafile=str(ca))
    with GatewayClient(gateway, key, verify=verify) as client:
        kv = GatewayOrderedKv(client, bucket)
        try:
            yield kv
        finally:
            kv.close()


@cascadb_app.command("sql")
def sql(
    statement: Annotated[str, typer.Argument(help="SQL (several statements: one transaction)")],
    param: Annotated[list[str], typer.Option("--param", help="a ? parameter, in order")] = [],  # noqa: B006
    gateway: Gateway = DEFAULT_GATEWAY,
    bucket: Bucket = "cascadb",
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
) -> None:
    """Run SQL and print the last statement's rows (tab-separated) or its command tag."""
    from meterseal.cascadb import Database

    with _store(gateway, bucket, key_env, ca) as kv:
        session = Database(kv).session(autocommit=False)  # type: ignore[arg-type]
        result = session.execute(statement, list(param))
        session.commit()
    if result.columns is None:
        count = "" if result.rowcount < 0 else f" {result.rowcount}"
        console.print(f"{result.command}{count}", markup=False, highlight=False)
        return
    typer.echo("\t".join(result.columns))  # tabs kept: a script cuts the columns
    for row in result.rows:
        typer.echo("\t".join("NULL" if v is None else str(v) for v in row))


@cascadb_app.command("serve")
def serve(
    listen: Annotated[str, typer.Option(help="host:port of the PostgreSQL protocol")] = (
        "127.0.0.1:5433"
    ),
    gateway: Gateway = DEFAULT_GATEWAY,
    bucket: Bucket = "cascadb",
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
) -> None:
    """Serve the bucket's database over the PostgreSQL protocol until SIGINT or SIGTERM."""
    from meterseal.cascadb import Database
    from meterseal.cascadb.pgwire import PgServer

    host, _, port = listen.rpartition(":")
    password = os.environ.get("MS_CASCADB_PASSWORD")

    def check(user: str, given: str, source: str) -> bool:
        return given == password

    with _store(gateway, bucket, key_env, ca) as kv:
        server = PgServer(
            Database(kv),  # type: ignore[arg-type]
            host=host or "127.0.0.1",
            port=int(port),
            authenticate=check if password else None,
            log=lambda line: None,
        )
        asyncio.run(_serve(server, gateway, bucket))


async def _serve(server: object, gateway: str, bucket: str) -> None:
    from meterseal.cascadb.pgwire import PgServer

    assert isinstance(server, PgServer)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console.print(
        f"cascadb: PostgreSQL protocol on {server.host}:{server.port} "
        f'(bucket {bucket} at {gateway}); psql "host={server.host} port={server.port} '
        'sslmode=disable"',
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    await stop.wait()
    await server.close()
