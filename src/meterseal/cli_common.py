"""What every command module of the CLI shares: the console, option types, errors, deployments."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from meterseal.crypto.suites import SUITES

if TYPE_CHECKING:
    from meterseal.deployment import Deployment

console = Console()
PassphraseEnv = Annotated[
    str,
    typer.Option(help="environment variable holding the key passphrase (unset: keys unencrypted)"),
]
DeploymentDir = Annotated[Path, typer.Option("--deployment", "-d", help="deployment directory")]
StoreUrl = Annotated[
    str, typer.Option("--store", help="database URL (sqlite:///FILE or postgresql+psycopg://…)")
]
DEFAULT_DEPLOYMENT = Path("var/deployment")
DEFAULT_STORE = "sqlite:///var/meterseal.db"
SUITE_HELP = f"cipher suite: {', '.join(SUITES)}"
# Every core opens packets when there is more than one; on one core a worker would only add IPC.
AUTO_OPEN_WORKERS = cores if (cores := os.cpu_count() or 1) > 1 else 0


def passphrase(env_name: str) -> bytes | None:
    """The passphrase held in environment variable `env_name`, if set."""
    value = os.environ.get(env_name)
    return value.encode() if value else None


def load(deployment_dir: Path, passphrase_env: str) -> Deployment:
    """The deployment in `deployment_dir` (a ConfigurationError names what is wrong)."""
    from meterseal.deployment import load_deployment

    return load_deployment(deployment_dir, passphrase(passphrase_env))


def shown(url: str) -> str:
    """A database URL fit to print (password hidden)."""
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)
