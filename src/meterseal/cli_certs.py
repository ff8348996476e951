"""`meterseal certs`: TLS certificates from the deployment CA for services and trusted workers."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DeploymentDir,
    PassphraseEnv,
    console,
)
from meterseal.cli_common import load as _load
from meterseal.cli_common import passphrase as _passphrase
from meterseal.errors import ConfigurationError

certs_app = typer.Typer(
    help="TLS certificates from the deployment CA (services, trusted workers).",
    no_args_is_help=True,
)


@certs_app.command("issue")
def certs_issue(
    service: Annotated[str, typer.Argument(help="service or stage name (its client identity)")],
    host: Annotated[
        list[str] | None,
        typer.Option(help="host name or IP address it serves at (repeat); none: client only"),
    ] = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Issue SERVICE a TLS key (encrypted at rest) and certificate: DEPLOYMENT/tls/SERVICE.*."""
    from meterseal.deployment import issue_tls_identity

    deployment = _load(deployment_dir, passphrase_env)
    cert_path, key_path = issue_tls_identity(
        deployment,
        service,
        host or [],
        passphrase=_passphrase(passphrase_env),
        now=dt.datetime.now(dt.UTC),
    )
    role = f"server for {', '.join(host)} and client" if host else "client"
    console.print(f"{service}: {role} certificate {cert_path}, key {key_path}")


@certs_app.command("nats-server")
def certs_nats_server(
    server_dir: Annotated[Path, typer.Argument(help="directory for the server's files")],
    host: Annotated[
        list[str] | None,
        typer.Option(help="name or address the server is reached by (repeat; 127.0.0.1)"),
    ] = None,
    client: Annotated[
        list[str] | None,
        typer.Option(help="a service that may connect (repeat; default: every `certs issue`d)"),
    ] = None,
    bind: Annotated[str, typer.Option(help="address the server listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="its TLS client port")] = 4222,
    name: Annotated[str | None, typer.Option(help="server name (distinct in a cluster)")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="placement tag, e.g. node:n1 for a KVS node (repeat)")
    ] = None,
    cluster: Annotated[str | None, typer.Option(help="join the cluster of this name")] = None,
    cluster_port: Annotated[int, typer.Option(help="its TLS route port (--cluster)")] = 6222,
    route: Annotated[
        list[str] | None, typer.Option(help="HOST:PORT of another server's routes (repeat)")
    ] = None,
    monitor: Annotated[
        str | None, typer.Option(help="HOST:PORT of an HTTP monitoring listener (none if unset)")
    ] = None,
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Write a nats-server config: JetStream, TLS only, clients by deployment-CA certificate."""
    from meterseal.deployment import TLS_DIRECTORY, tls_identity_paths
    from meterseal.services import nats_server

    deployment = _load(deployment_dir, passphrase_env)
    clients = client or nats_server.deployment_clients(deployment_dir / TLS_DIRECTORY)
    if not clients:
        raise ConfigurationError("no service may connect: `certs issue NAME` first, or --client")
    hosts = host or ["127.0.0.1"]
    if route and not cluster:
        raise ConfigurationError("--route belongs to a cluster: give --cluster NAME")
    joined = nats_server.ClusterPlan(cluster, cluster_port, tuple(route or ())) if cluster else None
    plan = nats_server.ServerPlan(
        server_dir,
        tuple(clients),
        bind,
        port,
        server_name=name,
        tags=tuple(tag or ()),
        cluster=joined,
        monitor=monitor,
    )
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = deployment.ca_key, deployment.ca_cert
    conf = nats_server.write_server(plan, ca_key, ca_cert, hosts, now=now, rng=os.urandom)
    ca = deployment_dir / "ca.cert.pem"
    # Parseable lines: what to start, and the URL each service connects with.
    print(f"server nats-server -c {conf.resolve()}")
    for name in clients:
        cert, key = tls_identity_paths(deployment_dir, name)
        print(f"client {name} tls://{hosts[0]}:{port}?ca={ca}&cert={cert}&key={key}")
