"""`meterseal certs`: TLS certificates from the deployment CA for services and trusted workers."""

from __future__ import annotations

import datetime as dt
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
