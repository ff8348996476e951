"""`meterseal cascadb sql|serve|provision`: SQL over a bucket of the secure KVS.

`sql` is a client of the KVS gateway holding only the gateway's API key for its bucket
(MS_KVS_KEY, `meterseal kvs keys add --bucket cascadb --rights rw`). `serve` is CascaDB as an
attested trusted worker (cascadb.service): its bucket's key and TLS identity from the CAS,
the JSON API over HTTPS and the PostgreSQL protocol over TLS, clients authenticated as the
accounts' operators and administrators. `provision` puts its secrets and rule in the CAS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from meterseal.cli_common import (
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    console,
    load,
    passphrase,
    print_provisioned,
)
from meterseal.errors import ConfigurationError

cascadb_app = typer.Typer(help="CascaDB: SQL over the secure KVS.", no_args_is_help=True)
Gateway = Annotated[
    str | None, typer.Option("--gateway", help="KVS gateway URL (default http://127.0.0.1:7470)")
]
Bucket = Annotated[str, typer.Option("--bucket", help="the bucket holding the database")]
KeyEnv = Annotated[str, typer.Option(help="environment variable holding the API key (kvk_…)")]
CaFile = Annotated[
    Path | None,
    typer.Option("--ca", help="CA certificate of an https gateway (default: the deployment's)"),
]


@contextlib.contextmanager
def _store(
    gateway: str | None, bucket: str, key_env: str, ca: Path | None, deployment: Path
) -> Iterator[object]:
    from meterseal.cascadb.gateway_kv import GatewayOrderedKv
    from meterseal.cli_kvs_common import gateway_client

    with gateway_client(gateway, key_env, ca, deployment, needed=f" for {bucket}") as client:
        kv = GatewayOrderedKv(client, bucket)
        try:
            yield kv
        finally:
            kv.close()


@cascadb_app.command("sql")
def sql(
    statement: Annotated[str, typer.Argument(help="SQL (several statements: one transaction)")],
    param: Annotated[list[str], typer.Option("--param", help="a ? parameter, in order")] = [],  # noqa: B006
    gateway: Gateway = None,
    bucket: Bucket = "cascadb",
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
    deployment: DeploymentDir = Path("var/deployment"),
) -> None:
    """Run SQL and print the last statement's rows (tab-separated) or its command tag."""
    from meterseal.cascadb import Database

    with _store(gateway, bucket, key_env, ca, deployment) as kv:
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
    deployment: DeploymentDir = Path("var/deployment"),
    cas: Annotated[str | None, typer.Option("--cas", help="CAS URL (CascaDB's keys)")] = None,
    store: StoreUrl = "sqlite:///var/meterseal.db",
    memory: Annotated[
        bool, typer.Option("--memory", help="keep the database in memory, not on the KVS")
    ] = False,
    bucket: Bucket = "cascadb",
    directory: Annotated[
        Path, typer.Option("--dir", help="the KVS's local storage nodes and catalog")
    ] = Path("var/kvs"),
    nodes: Annotated[int, typer.Option("--nodes", help="number of KVS storage nodes")] = 9,
    nodes_nats: Annotated[
        str | None, typer.Option("--nodes-nats", help="NATS URL(s) of the KVS storage nodes")
    ] = None,
    nats_prefix: Annotated[
        str, typer.Option("--nats-prefix", help="this deployment's KVS streams on NATS")
    ] = "",
    default_policy: Annotated[
        str, typer.Option("--default-policy", help="redundancy of its objects: rep:N, ec:K+M")
    ] = "ec:6+2",
    listen: Annotated[str, typer.Option(help="host:port of the JSON API (HTTPS)")] = (
        "127.0.0.1:7472"
    ),
    pg_listen: Annotated[str, typer.Option(help="host:port of the PostgreSQL protocol")] = (
        "127.0.0.1:5433"
    ),
    admin: Annotated[
        str, typer.Option(help="host:port of /metrics and /readyz ('off': none)")
    ] = "127.0.0.1:0",
    log_statements: Annotated[
        bool, typer.Option(help="log each statement's caller and shape (no values) to stderr")
    ] = True,
    idle_in_transaction_timeout: Annotated[
        float,
        typer.Option(
            "--idle-in-transaction-timeout",
            min=0,
            help="seconds a PostgreSQL session may idle in a transaction (0: no limit)",
        ),
    ] = 60.0,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Serve CascaDB attested: keys from the CAS, JSON API and PostgreSQL protocol over TLS."""
    from meterseal.cascadb.service import CascadbOptions, serve_cascadb
    from meterseal.kvs.policy import parse_policy
    from meterseal.kvs.service import StoreLayout

    if not cas:
        raise ConfigurationError(
            "CascaDB's keys come from the CAS: give --cas URL (or cas.url in meterseal.toml)"
        )
    parse_policy(default_policy)  # refused before attesting
    layout = None
    if not memory:
        layout = StoreLayout(directory, nodes, nodes_nats, nats_prefix.strip("_.") or "kvs")
    options = CascadbOptions(
        deployment,
        cas,
        store,
        layout,
        bucket=bucket,
        default_policy=default_policy,
        listen=listen,
        pg_listen=pg_listen,
        admin=None if admin == "off" else admin,
        passphrase=passphrase(passphrase_env),
        idle_in_transaction_timeout=idle_in_transaction_timeout or None,
    )

    def log(line: str) -> None:
        print(f"cascadb {line}", file=sys.stderr, flush=True)

    try:
        asyncio.run(serve_cascadb(options, log=log if log_statements else lambda line: None))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {listen} or {pg_listen}: {exc}") from exc


@cascadb_app.command("provision")
def provision(
    deployment: DeploymentDir = Path("var/deployment"),
    store: Annotated[str, typer.Option("--store", help="the CAS's store URL")] = (
        "sqlite:///var/meterseal.db"
    ),
    bucket: Annotated[
        list[str] | None, typer.Option("--bucket", help="a bucket CascaDB keeps a database in")
    ] = None,
    host: Annotated[
        list[str] | None, typer.Option(help="issue CascaDB a TLS identity for this host")
    ] = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Put CascaDB's bucket keys and TLS identity in the CAS and allow its measurement.

    Run it again after an upgrade of the code (the rule names the new measurement).
    """
    from meterseal.cascadb.service_trust import provision_cascadb
    from meterseal.services.trusted_setup import tls_issuer
    from meterseal.trust.cli import _cas

    hosts = host or []
    issue = tls_issuer(lambda: load(deployment, passphrase_env), hosts)
    with _cas(store, deployment, passphrase_env) as authority:
        done = provision_cascadb(
            authority, os.urandom, buckets=bucket or ["cascadb"], issue_tls=issue, hosts=hosts
        )
    print_provisioned("cascadb", done)
