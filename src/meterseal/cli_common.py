"""What every command module of the CLI shares: the console, option types, errors, deployments."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from meterseal.crypto.suites import SUITES

if TYPE_CHECKING:
    import ssl

    from meterseal.deployment import Deployment
    from meterseal.kvs.service_trust import Provisioned

console = Console()
PassphraseEnv = Annotated[
    str,
    typer.Option(help="environment variable holding the key passphrase (unset: keys unencrypted)"),
]
DeploymentDir = Annotated[Path, typer.Option("--deployment", "-d", help="deployment directory")]
StoreUrl = Annotated[
    str, typer.Option("--store", help="database URL (sqlite:///FILE or postgresql+psycopg://…)")
]
TlsName = Annotated[
    str | None,
    typer.Option(
        "--tls",
        help="serve HTTPS with this service's certificate (DEPLOYMENT/tls/NAME: `certs issue`)",
    ),
]
ClientCerts = Annotated[
    str,
    typer.Option(
        help="with --tls, client certificates of the deployment CA: required (mutual TLS), "
        "optional (known services are named) or off"
    ),
]
CLIENT_CERTS = ("required", "optional", "off")
DEFAULT_DEPLOYMENT = Path("var/deployment")
DEFAULT_STORE = "sqlite:///var/meterseal.db"
SUITE_HELP = f"cipher suite: {', '.join(SUITES)}"
# Every core opens packets when there is more than one; on one core a worker would only add IPC.
AUTO_OPEN_WORKERS = cores if (cores := os.cpu_count() or 1) > 1 else 0


def option_source(ctx: typer.Context, name: str) -> str | None:
    """Where option `name` came from: COMMANDLINE, ENVIRONMENT, DEFAULT_MAP (meterseal.toml)…"""
    # By the enum member's name: typer carries a click of its own, whose ParameterSource is
    # not the installed click's.
    source = ctx.get_parameter_source(name)
    return None if source is None else source.name


def from_config(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` came from the configuration file (click's default_map)."""
    return option_source(ctx, name) == "DEFAULT_MAP"


def passphrase(env_name: str) -> bytes | None:
    """The passphrase held in environment variable `env_name`, if set."""
    value = os.environ.get(env_name)
    return value.encode() if value else None


class _StderrWarning(logging.Handler):
    """Shows a warning record as one `warning:` line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        """Print the record's message."""
        text = escape(record.getMessage())
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {text}", soft_wrap=True)


def show_key_warnings() -> None:
    """Print the unencrypted-keys warning on stderr (once per process, as at_rest logs it)."""
    from meterseal.crypto import at_rest

    logger = logging.getLogger(at_rest.__name__)
    if not any(isinstance(h, _StderrWarning) for h in logger.handlers):
        logger.addHandler(_StderrWarning(logging.WARNING))


def load(deployment_dir: Path, passphrase_env: str) -> Deployment:
    """The deployment in `deployment_dir` (a ConfigurationError names what is wrong)."""
    from meterseal.deployment import load_deployment

    return load_deployment(deployment_dir, passphrase(passphrase_env))


def print_provisioned(policy: str, done: Provisioned) -> None:
    """What a trusted service's provisioning put in the CAS: each secret (new or kept), its rule."""
    for name, (version, new) in done.secrets.items():
        console.print(f"secret  {name} v{version}{'' if new else ' (kept)'}", highlight=False)
    console.print(
        f"policy  {policy} {done.measurement.hex} may receive {', '.join(done.names)}",
        highlight=False,
        soft_wrap=True,
    )


def shown(url: str) -> str:
    """A database URL fit to print (password hidden)."""
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def server_tls(
    deployment_dir: Path, name: str | None, client_certs: str, passphrase_env: str
) -> ssl.SSLContext | None:
    """The TLS context `--tls NAME --client-certs ...` ask for (None: plain HTTP)."""
    from meterseal.deployment import load_ca_certificate, load_tls_identity
    from meterseal.errors import ConfigurationError
    from meterseal.runtime.tls import server_context

    if client_certs not in CLIENT_CERTS:
        raise ConfigurationError(f"--client-certs is one of {', '.join(CLIENT_CERTS)}")
    if name is None:
        return None
    identity = load_tls_identity(deployment_dir, name, passphrase(passphrase_env))
    ca = None if client_certs == "off" else load_ca_certificate(deployment_dir)
    return server_context(identity, ca, require_client=client_certs == "required")
