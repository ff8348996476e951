"""`meterseal kvs …`: the secure key-value store's gateway, its API keys, and a client.

`kvs serve` runs the gateway attested (its keys come from the CAS); `kvs keys add|list|revoke`
manage its API keys, attested as the gateway too (the key table is sealed under the gateway's
master secret); `kvs put|get|stat|ls|rm|policy|scrub` are clients of a running gateway, with
the API key from an environment variable (never a flag, which other users of the machine
could read in the process list).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from meterseal.cli_common import (
    DeploymentDir,
    PassphraseEnv,
    console,
    load,
    passphrase,
    print_provisioned,
)
from meterseal.cli_kvs_common import DEFAULT_GATEWAY, gateway_client
from meterseal.errors import ConfigurationError
from meterseal.kvs.gateway_client import open_source
from meterseal.kvs.gateway_keys import KvsKey, NewKey, Scope, parse_rights
from meterseal.kvs.service import GATEWAY_PORT, GatewayOptions, StoreLayout, attested_store
from meterseal.ui import progress_bar

kvs_app = typer.Typer(
    help="The secure key-value store: its gateway, API keys, and objects.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="API keys of the KVS gateway (run attested as the gateway).", no_args_is_help=True
)
kvs_app.add_typer(keys_app, name="keys")
err = Console(stderr=True)

Cas = Annotated[str | None, typer.Option("--cas", help="CAS URL (the gateway's keys)")]
StoreDir = Annotated[
    Path, typer.Option("--dir", help="local storage: one directory per node, and the catalog")
]
Nodes = Annotated[int, typer.Option("--nodes", help="number of local storage nodes")]
NodesNats = Annotated[
    str | None,
    typer.Option("--nodes-nats", help="NATS cluster URL(s) of the storage nodes (n1 … nN)"),
]
Prefix = Annotated[
    str, typer.Option("--nats-prefix", help="names this deployment's streams on a NATS cluster")
]
DefaultPolicy = Annotated[
    str, typer.Option("--default-policy", help="a bucket's policy: rep:N, ec:K+M, hybrid:K+M")
]
Gateway = Annotated[str | None, typer.Option("--gateway", help=f"gateway URL ({DEFAULT_GATEWAY})")]
KeyEnv = Annotated[str, typer.Option(help="environment variable holding the API key (kvk_…)")]
CaFile = Annotated[
    Path | None,
    typer.Option("--ca", help="CA certificate of an https gateway (default: the deployment's)"),
]
Bucket = Annotated[str, typer.Argument(help="bucket name")]
ObjectKey = Annotated[str, typer.Argument(help="object key")]


def _layout(directory: Path, nodes: int, nats: str | None, prefix: str) -> StoreLayout:
    return StoreLayout(directory, nodes, nats, prefix.strip("_.") or "kvs")


def _options(
    deployment: Path,
    cas: str | None,
    layout: StoreLayout,
    passphrase_env: str,
    policy: str = "rep:1",
) -> GatewayOptions:
    if not cas:
        raise ConfigurationError(
            "the gateway's keys come from the CAS: give --cas URL (or cas.url in meterseal.toml)"
        )
    return GatewayOptions(deployment, cas, layout, policy, passphrase=passphrase(passphrase_env))


@kvs_app.command("serve")
def serve(
    deployment: DeploymentDir = Path("var/deployment"),
    cas: Cas = None,
    directory: StoreDir = Path("var/kvs"),
    nodes: Nodes = 9,
    nodes_nats: NodesNats = None,
    nats_prefix: Prefix = "",
    default_policy: DefaultPolicy = "ec:6+2",
    listen: Annotated[str, typer.Option(help="host:port to listen on")] = "127.0.0.1:7470",
    tls: Annotated[
        bool, typer.Option(help="serve HTTPS with the TLS key the CAS releases (init --host)")
    ] = False,
    admin: Annotated[
        str, typer.Option(help="host:port of /metrics and /readyz ('off': none)")
    ] = "127.0.0.1:0",
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
    max_object: Annotated[
        int, typer.Option("--max-object", min=1, help="bytes an object may have (413 beyond)")
    ] = 1 << 30,
    sweep_every: Annotated[
        float,
        typer.Option(
            "--sweep-every", min=0, help="seconds between sweeps of unnamed blobs (0: never)"
        ),
    ] = 600.0,
) -> None:
    """Serve the KVS gateway: attest, fetch its keys from the CAS, serve until Ctrl-C."""
    from dataclasses import replace

    from meterseal.kvs.policy import parse_policy
    from meterseal.kvs.service import serve_gateway
    from meterseal.runtime.address import parse_address

    parse_address(listen, GATEWAY_PORT)  # both refused before attesting
    parse_policy(default_policy)
    layout = _layout(directory, nodes, nodes_nats, nats_prefix)
    options = replace(
        _options(deployment, cas, layout, passphrase_env, default_policy),
        listen=listen,
        tls=tls,
        admin=None if admin == "off" else admin,
        max_object=max_object,
        sweep_every=sweep_every,
    )
    try:
        asyncio.run(serve_gateway(options, own_process=True))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {listen}: {exc}") from exc


@kvs_app.command("provision")
def provision(
    deployment: DeploymentDir = Path("var/deployment"),
    store: Annotated[
        str, typer.Option("--store", help="the CAS's store URL")
    ] = "sqlite:///var/meterseal.db",
    host: Annotated[
        list[str] | None, typer.Option(help="issue the gateway a TLS identity for this host")
    ] = None,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Put the gateway's master secret (and TLS identity) in the CAS and allow its measurement.

    What `meterseal init` does for the gateway; run it again after an upgrade of the code.
    """
    from meterseal.kvs.service_trust import provision_gateway
    from meterseal.services.trusted_setup import tls_issuer
    from meterseal.trust.cli import _cas

    hosts = host or []
    issue = tls_issuer(lambda: load(deployment, passphrase_env), hosts)
    with _cas(store, deployment, passphrase_env) as cas:
        done = provision_gateway(cas, os.urandom, issue_tls=issue, hosts=hosts)
    print_provisioned("kvs-gateway", done)


def _attested_options(
    deployment: DeploymentDir = Path("var/deployment"),
    cas: Cas = None,
    directory: StoreDir = Path("var/kvs"),
    nodes: Nodes = 9,
    nodes_nats: NodesNats = None,
    nats_prefix: Prefix = "",
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> GatewayOptions:
    """What a command run attested as the gateway needs: the deployment, CAS, storage nodes."""
    layout = _layout(directory, nodes, nodes_nats, nats_prefix)
    return _options(deployment, cas, layout, passphrase_env)


def attested_command(command: Callable[..., None]) -> Callable[..., None]:
    """`command(..., options=GatewayOptions)` as a CLI command: its own parameters and, for
    `options`, those of `_attested_options` (declared once for every `kvs keys` command)."""
    shared = inspect.signature(_attested_options, eval_str=True).parameters
    own = inspect.signature(command, eval_str=True).parameters
    params = [p for name, p in own.items() if name != "options"] + list(shared.values())

    @functools.wraps(command)
    def run(**given: Any) -> None:
        store = {name: given.pop(name) for name in shared}
        command(options=_attested_options(**store), **given)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


def _announce(provenance: str) -> None:
    """Where the gateway's keys came from, simulated attestation named (stderr)."""
    err.print(provenance, highlight=False, soft_wrap=True)


@keys_app.command("add")
@attested_command
def keys_add(
    bucket: Annotated[str, typer.Option(help="the bucket the key opens ('*': every bucket)")],
    rights: Annotated[str, typer.Option(help="read, write, admin (comma-separated) or rw")],
    options: GatewayOptions,
    prefix: Annotated[str, typer.Option(help="only object keys starting with this")] = "",
    label: Annotated[str, typer.Option(help="what the key is for (shown in lists)")] = "",
) -> None:
    """Make an API key for one bucket (and key prefix) with its rights; shown once."""
    scope = Scope(bucket, prefix, parse_rights(rights))

    async def add() -> NewKey:
        async with attested_store(options, _announce) as state:
            table, new = (await state.key_table()).add(scope, label, time.time(), os.urandom)
            await state.save_keys(table)
            return new

    new = asyncio.run(add())
    console.print(f"key id {new.key.key_id}: {new.key.scope}", highlight=False, soft_wrap=True)
    err.print("the key, shown once (give it to the client in MS_KVS_KEY):")
    print(new.secret, flush=True)


@keys_app.command("list")
@attested_command
def keys_list(options: GatewayOptions) -> None:
    """List the API keys: id, scope, active or revoked, label."""

    async def listing() -> list[KvsKey]:
        async with attested_store(options, _announce) as state:
            return (await state.key_table()).listing()

    keys = asyncio.run(listing())
    for key in keys:
        status = "active" if key.active else "revoked"
        line = f"{key.key_id}  {key.scope}  {status}  {key.label}"
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    console.print(f"{len(keys)} keys")


@keys_app.command("revoke")
@attested_command
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (kvs keys list)")],
    options: GatewayOptions,
) -> None:
    """Revoke an API key (every gateway refuses it within seconds)."""

    async def revoke() -> None:
        async with attested_store(options, _announce) as state:
            await state.save_keys((await state.key_table()).revoke(key_id, time.time()))

    asyncio.run(revoke())
    console.print(f"revoked {key_id}")


@kvs_app.command("put")
def put(
    bucket: Bucket,
    key: ObjectKey,
    file: Annotated[Path, typer.Argument(help="the file to store ('-': standard input)")],
    policy: Annotated[
        str | None, typer.Option(help="this object's policy (default: the bucket's)")
    ] = None,
    gateway: Gateway = None,
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
    deployment: DeploymentDir = Path("var/deployment"),
) -> None:
    """Store FILE as KEY in BUCKET (streamed; sealed by the gateway)."""
    size = None if str(file) == "-" else file.stat().st_size
    with (
        gateway_client(gateway, key_env, ca, deployment) as client,
        open_source(file) as source,
        progress_bar(err) as bar,
    ):
        task = bar.add_task(f"put {bucket}/{key}", total=size)
        done = client.put(bucket, key, source, policy, lambda n: bar.advance(task, n))
    console.print(
        f"stored {bucket}/{key} version {done['version']} ({done['size']} bytes, {done['policy']})",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


def _range(text: str | None) -> tuple[int, int | None] | None:
    if text is None:
        return None
    first, _, last = text.partition("-")
    try:
        return int(first), (int(last) if last else None)
    except ValueError:
        raise typer.BadParameter("FIRST-LAST or FIRST- (bytes, inclusive)") from None


@kvs_app.command("get")
def get(
    bucket: Bucket,
    key: ObjectKey,
    out: Annotated[Path, typer.Argument(help="where to write it ('-': standard output)")] = Path(
        "-"
    ),
    byte_range: Annotated[
        str | None, typer.Option("--range", help="bytes FIRST-LAST (inclusive) or FIRST-")
    ] = None,
    gateway: Gateway = None,
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
    deployment: DeploymentDir = Path("var/deployment"),
) -> None:
    """Read KEY of BUCKET (streamed) into OUT."""
    wanted = _range(byte_range)
    with gateway_client(gateway, key_env, ca, deployment) as client:
        if str(out) == "-":
            client.get(bucket, key, sys.stdout.buffer, wanted)
            sys.stdout.buffer.flush()
            return
        size = client.stat(bucket, key).size
        with out.open("wb") as sink, progress_bar(err) as bar:
            task = bar.add_task(f"get {bucket}/{key}", total=None if wanted else size)
            written = client.get(bucket, key, sink, wanted, lambda n: bar.advance(task, n))
    console.print(f"wrote {written} bytes to {out}", highlight=False, soft_wrap=True)


@kvs_app.command("stat")
def stat(
    bucket: Bucket,
    key: ObjectKey,
    gateway: Gateway = None,
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
    deployment: DeploymentDir = Path("var/deployment"),
) -> None:
    """Size, version and policy of KEY."""
    with gateway_client(gateway, key_env, ca, deployment) as client:
        found = client.stat(bucket, key)
    console.print(
        f"{bucket}/{key}: {found.size} bytes, version {found.version}, {found.policy}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


@kvs_app.command("ls")
def ls(
    bucket: Bucket,
    prefix: Annotated[str, typer.Option(help="only keys starting with this")] = "",
    limit: Annotated[int, typer.Option(help="at most this many (0: all)")] = 0,
    gateway: Gateway = None,
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
    deployment: DeploymentDir = Path("var/deployment"),
) -> None:
    """List BUCKET's objects in key order: key, size, version, policy."""
    count = 0
    with gateway_client(gateway, key_env, ca, deployment) as client:
        for item in client.list_all(bucket, prefix):
            line = f"{item['key']}  {item['size']}  v{item['version']}  {item['policy']}"
            console.print(line, highlight=False, soft_wrap=True, markup=False)
            count += 1
            if count == limit:
                break
    console.print(f"{count} object{'' if count == 1 else 's'}")


@kvs_app.command("rm")
def rm(
    bucket: Bucket,
    key: ObjectKey,
    gateway: Gateway = None,
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
    deployment: DeploymentDir = Path("var/deployment"),
) -> None:
    """Delete KEY from BUCKET."""
    with gateway_client(gateway, key_env, ca, deployment) as client:
        client.delete(bucket, key)
    console.print(f"deleted {bucket}/{key}", highlight=False, markup=False)


@kvs_app.command("policy")
def policy(
    bucket: Bucket,
    new: Annotated[
        str | None, typer.Argument(help="rep:N, ec:K+M or hybrid:K+M (none: show it)")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="one object (default: the bucket)")
    ] = None,
    existing: Annotated[
        bool, typer.Option(help="re-encode the bucket's objects too (in the background)")
    ] = False,
    gateway: Gateway = None,
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
    deployment: DeploymentDir = Path("var/deployment"),
) -> None:
    """Show or change a bucket's default policy, or re-encode one object (--key)."""
    with gateway_client(gateway, key_env, ca, deployment) as client:
        if key is not None:
            if new is None:
                raise typer.BadParameter("give the object's new policy", param_hint="NEW")
            done = client.set_policy(bucket, key, new)
            console.print(
                f"{bucket}/{key} version {done['version']} is {done['policy']}",
                highlight=False,
                markup=False,
            )
            return
        shown = client.bucket_policy(bucket, new, existing)
    job = shown.get("reencoding")
    line = f"bucket {bucket}: {shown['policy']}"
    if job:
        state = "done" if job["finished"] else "running"
        line += f"; re-encoding to {job['policy']} {state}: {job['done']}/{job['total']}"
        line += f" done, {job['failed']} failed"
    console.print(line, highlight=False, markup=False, soft_wrap=True)


@kvs_app.command("scrub")
def scrub(
    repair: Annotated[bool, typer.Option(help="rebuild what is missing or corrupt")] = False,
    gateway: Gateway = None,
    key_env: KeyEnv = "MS_KVS_KEY",
    ca: CaFile = None,
    deployment: DeploymentDir = Path("var/deployment"),
) -> None:
    """Check every blob of the store (an admin key over '*'); with --repair, rebuild."""
    with gateway_client(gateway, key_env, ca, deployment) as client:
        report = client.scrub(repair)
    for name, value in report.items():
        console.print(f"{name}: {value}", highlight=False, markup=False, soft_wrap=True)
