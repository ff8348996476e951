"""`meterseal --config PATH`, `meterseal config show|check|example`, and the default_map.

cli.main loads the settings before click parses anything and hands them to click as the
root context's `default_map`: click then takes an option's value from the command line,
else from its environment variable (none of ours has one), else from the default_map, else
from its declared default. Environment variables of the file's keys (MS_STORE_URL…) are
merged into the settings here, below flags and above the file, so the order stays
flag > environment > file > default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from meterseal.cli_common import console
from meterseal.config.render import render_config
from meterseal.config.settings import (
    CONFIG_ENV,
    CONFIG_FILE,
    KEYS,
    Settings,
    Source,
    load_settings,
    locate,
    read_file,
)
from meterseal.errors import ConfigurationError
from meterseal.runtime.address import hide_password

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=f"configuration file (default: {CONFIG_ENV}, else ./{CONFIG_FILE} if present)",
        show_default=False,
    ),
]
# Experiments stay reproducible whatever the deployment says; `config` shows and checks itself;
# `init` writes a new deployment's file and must not take another's (./meterseal.toml) values.
_NOT_FED = ("bench", "config", "init")

config_app = typer.Typer(
    help=f"The configuration file ({CONFIG_FILE}): show, check, example.", no_args_is_help=True
)


def root_callback(config: ConfigOption = None) -> None:
    """meterseal: sealed smart-meter readings from the meter to the bill."""
    # cli.main has read --config already (the default_map must exist before parsing).


def config_path(argv: Sequence[str]) -> Path | None:
    """The value of the global `--config PATH` (before the command name), if given."""
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--config="):
            return Path(arg.removeprefix("--config="))
        if not arg.startswith("-"):
            return None  # the command: later options are the command's own
    return None


def _command_name(argv: Sequence[str]) -> str:
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""


def default_map(command: Any, settings: Settings) -> dict[str, Any]:
    """click's default_map of the command tree under `command` for the configured settings."""
    configured = list(settings.configured())
    if not configured:
        return {}

    def walk(node: Any, path: tuple[str, ...]) -> dict[str, Any]:
        if isinstance(node, TyperGroup):
            found = {}
            for name, sub in node.commands.items():
                if not path and name in _NOT_FED:
                    continue
                entry = walk(sub, (*path, name))
                if entry:
                    found[name] = entry
            return found
        values = {}
        for param in node.params:
            if param.param_type_name != "option":
                continue
            for spec, value in configured:
                if value is not None and spec.feeds(" ".join(path), param.opts):
                    values[param.name] = value
        return values

    return walk(command, ())


def cli_defaults(app: typer.Typer, argv: Sequence[str]) -> dict[str, Any]:
    """The default_map for running `meterseal ARGV` (empty when nothing is configured)."""
    if _command_name(argv) in _NOT_FED:
        return {}  # `config check` reports a broken file instead of failing on it first
    path = locate(config_path(argv), os.environ, Path.cwd())
    settings = load_settings(path)
    if not any(True for _ in settings.configured()):
        return {}
    return default_map(typer.main.get_command(app), settings)


_SECRET_QUERY = re.compile(r"([?&](?:password|token|secret|key)=)[^&]*", re.IGNORECASE)
_TOKEN = re.compile(r"(//)[^/:@]+@")  # nats://TOKEN@host: a user part without a password


def hidden(value: Any) -> str:
    """A setting's value fit to print: passwords, tokens and secret URL options as ***."""
    if value is None:
        return "(unset)"
    text = str(value)
    if "://" not in text:
        return text
    shown = hide_password(text)
    if shown == text and text.startswith(("nats:", "tls:")):
        shown = _TOKEN.sub(r"\1***@", text)
    return _SECRET_QUERY.sub(r"\1***", shown)


def _located(ctx: typer.Context, path: Path | None = None) -> Path | None:
    explicit = path or ctx.find_root().params.get("config")
    return locate(explicit, os.environ, Path.cwd())


@config_app.command("show")
def show(
    ctx: typer.Context,
    deployment: Annotated[Path | None, typer.Option("--deployment", "-d")] = None,
    store: Annotated[str | None, typer.Option("--store")] = None,
    nats: Annotated[str | None, typer.Option("--nats")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="NATS prefix")] = None,
    cas: Annotated[str | None, typer.Option("--cas")] = None,
    passphrase_env: Annotated[str | None, typer.Option("--passphrase-env")] = None,
) -> None:
    """Print the effective settings and where each comes from (secrets hidden).

    The options are those of the other commands: given here, they show as `flag`.
    """
    path = _located(ctx)
    settings = load_settings(path)
    flags = {
        "deployment.dir": deployment,
        "store.url": store,
        "nats.url": nats,
        "nats.prefix": prefix,
        "cas.url": cas,
        "deployment.passphrase_env": passphrase_env,
    }
    console.print(f"configuration file: {path.resolve() if path else '(none)'}", soft_wrap=True)
    rows = []
    for spec in KEYS.values():
        value, source = settings.value(spec.key), settings.source(spec.key).value
        if flags.get(spec.key) is not None:
            value, source = flags[spec.key], Source.FLAG.value
        rows.append((spec.key, hidden(value), f"{source} ({spec.env})"))
    # Plain aligned lines, never cut: a value is often a long path or URL.
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for key, value, source in rows:
        line = f"{key:<{widths[0]}}  {value:<{widths[1]}}  {source}"
        console.print(escape(line), soft_wrap=True, highlight=False)


@config_app.command("check")
def check(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(help="file (default: the one in use)")] = None,
) -> None:
    """Validate a configuration file: one clear error per wrong key, exit 2."""
    found = _located(ctx, path)
    if found is None:
        raise ConfigurationError(
            f"no configuration file: give PATH, --config, {CONFIG_ENV} or ./{CONFIG_FILE}"
        )
    values = read_file(found)
    load_settings(found)  # the environment's values are checked too
    console.print(f"{found}: ok ({len(values)} keys set)")


@config_app.command("example")
def example() -> None:
    """Print a commented configuration file with every key (redirect it to meterseal.toml)."""
    print(render_config({"deployment": {"name": "north", "dir": "."}}), end="")
