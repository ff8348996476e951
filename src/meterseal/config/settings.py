"""The settings of a deployment: the sections' values, their validation, where each came from.

A setting's value comes, highest first, from a command-line flag, an environment variable
(``MS_<SECTION>_<KEY>``), the configuration file, a default derived from other settings
(`deployment.name` and `deployment.dir`), or the built-in default. Flags are applied by the
CLI (click's default_map, config/cli.py); everything else is resolved here. The sections and
their keys are declared in config/sections.py.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The sections and their keys live in config/sections.py (the file's schema); re-exported so
# that the callers importing them from here keep working.
from meterseal.config.sections import KEYS as KEYS
from meterseal.config.sections import SECTIONS as SECTIONS
from meterseal.config.sections import AgentSection as AgentSection
from meterseal.config.sections import CascadbSection as CascadbSection
from meterseal.config.sections import CasSection as CasSection
from meterseal.config.sections import DeploymentSection as DeploymentSection
from meterseal.config.sections import IntegritySection as IntegritySection
from meterseal.config.sections import KeySpec as KeySpec
from meterseal.config.sections import KvsSection as KvsSection
from meterseal.config.sections import MqttSection as MqttSection
from meterseal.config.sections import NatsSection as NatsSection
from meterseal.config.sections import PortalSection as PortalSection
from meterseal.config.sections import RouterSection as RouterSection
from meterseal.config.sections import StoreSection as StoreSection
from meterseal.errors import ConfigurationError

CONFIG_FILE = "meterseal.toml"
CONFIG_ENV = "MS_CONFIG"
NO_CONFIG = "none"  # --config none, MS_CONFIG=none: no file, not even ./meterseal.toml
# One name that is a valid PostgreSQL schema, NATS stream prefix and MQTT topic level alike.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class Source(enum.StrEnum):
    """Where a setting's effective value came from."""

    DEFAULT = "default"  # built in
    DERIVED = "derived"  # from deployment.name or deployment.dir
    FILE = "file"
    ENV = "env"
    FLAG = "flag"  # a command-line option (known to the CLI only)


@dataclass(frozen=True)
class Settings:
    """The effective settings (file, environment, defaults) and where each came from."""

    # Factories, not instances: ruff cannot see from here that the sections are frozen.
    deployment: DeploymentSection = field(default_factory=DeploymentSection)
    store: StoreSection = field(default_factory=StoreSection)
    nats: NatsSection = field(default_factory=NatsSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    cas: CasSection = field(default_factory=CasSection)
    router: RouterSection = field(default_factory=RouterSection)
    integrity: IntegritySection = field(default_factory=IntegritySection)
    kvs: KvsSection = field(default_factory=KvsSection)
    cascadb: CascadbSection = field(default_factory=CascadbSection)
    agent: AgentSection = field(default_factory=AgentSection)
    portal: PortalSection = field(default_factory=PortalSection)
    file: Path | None = None  # the configuration file, if one was read
    sources: Mapping[str, Source] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        """The value of 'section.name'."""
        section, name = key.split(".")
        return getattr(getattr(self, section), name)

    def source(self, key: str) -> Source:
        """Where the value of 'section.name' came from."""
        return self.sources.get(key, Source.DEFAULT)

    def configured(self) -> Iterator[tuple[KeySpec, Any]]:
        """Every key whose value is not the built-in default, with that value."""
        for spec in KEYS.values():
            if self.source(spec.key) is not Source.DEFAULT:
                yield spec, self.value(spec.key)


def _where(path: Path | None, text: str, section: str, name: str) -> str:
    """'FILE:LINE: ' of `name` in [section] of the file's text ('' when not found)."""
    if path is None:
        return ""
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[] ")
        elif current == section and re.match(rf"{re.escape(name)}\s*=", stripped):
            return f"{path}:{number}: "
    return f"{path}: "


_KIND_NAMES = {str: "a string", Path: "a path (string)", int: "an integer", float: "a number"}


def check_value(spec: KeySpec, value: Any, where: str = "") -> Any:
    """`value` converted to the key's type; a ConfigurationError naming key and type if wrong."""
    kind = spec.kind
    ok = isinstance(value, str) if kind in (str, Path) else isinstance(value, kind)
    if kind in (int, float) and isinstance(value, bool):
        ok = False
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        wanted = _KIND_NAMES.get(kind, kind.__name__)
        raise ConfigurationError(
            f"{where}{spec.key} must be {wanted}, not {type(value).__name__} {value!r}"
        )
    if spec.key == "deployment.name" and value and not _NAME.fullmatch(value):
        raise ConfigurationError(
            f"{where}deployment.name {value!r} must match [a-z][a-z0-9_]* (at most 40 "
            "characters): it names PostgreSQL schemas, NATS streams and MQTT topics"
        )
    return Path(value) if kind is Path else value


def check_table(
    table: Mapping[str, Any], path: Path | None = None, text: str = ""
) -> dict[str, Any]:
    """The 'section.name' -> value of a parsed file; one ConfigurationError per wrong key."""
    values: dict[str, Any] = {}
    shown = f"{path}: " if path else ""
    for section, keys in table.items():
        if section not in SECTIONS:
            known = ", ".join(SECTIONS)
            raise ConfigurationError(f"{shown}unknown section [{section}] (known: {known})")
        if not isinstance(keys, Mapping):
            raise ConfigurationError(f"{shown}{section} must be a [{section}] table")
        for name, value in keys.items():
            spec = KEYS.get(f"{section}.{name}")
            if spec is None:
                known = ", ".join(k.name for k in KEYS.values() if k.section == section)
                raise ConfigurationError(
                    f"{_where(path, text, section, name)}unknown key {name!r} in [{section}] "
                    f"(known: {known})"
                )
            values[spec.key] = check_value(spec, value, _where(path, text, section, name))
    return values


def read_file(path: Path) -> dict[str, Any]:
    """The checked 'section.name' -> value of configuration file `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the configuration {path}: {exc.strerror}") from exc
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
    return check_table(table, path, text)


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values = {}
    for spec in KEYS.values():
        raw = environ.get(spec.env)
        if not raw:  # unset or empty: as if absent (as click treats option variables)
            continue
        value: Any = raw
        if spec.kind in (int, float):
            with contextlib.suppress(ValueError):  # check_value names the key and type wanted
                value = spec.kind(raw)
        elif spec.kind is bool:
            value = {"1": True, "true": True, "0": False, "false": False}.get(raw.lower(), raw)
        values[spec.key] = check_value(spec, value, f"{spec.env}: ")
    return values


def _sqlite_relative_to(url: str, base: Path) -> str:
    """A relative sqlite:/// or cascadb:/// URL made absolute against `base` (others as is)."""
    head, slashes, rest = url.partition(":///")
    if (
        slashes
        and head.startswith(("sqlite", "cascadb"))
        and rest
        and not rest.startswith((":memory:", "/"))
    ):
        return f"{head}:///{(base / rest).resolve()}"
    return url


def locate(explicit: Path | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    """The configuration file: `explicit` (--config), else MS_CONFIG, else ./meterseal.toml.

    ``none`` as either means no file at all (benches' servers, the test suite).
    """
    chosen = str(explicit) if explicit is not None else environ.get(CONFIG_ENV, "")
    if chosen == NO_CONFIG:
        return None
    if chosen:
        return Path(chosen)
    candidate = cwd / CONFIG_FILE
    return candidate if candidate.is_file() else None


def _sanitized(name: str) -> str:
    """A directory name as a deployment name ('' when nothing of it fits)."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    cleaned = cleaned.lstrip("0123456789_")[:40]
    return cleaned


def load_settings(
    path: Path | None, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Settings:
    """The settings of configuration file `path` (None: none) under environment `environ`.

    Relative paths of the file resolve against the file's directory, those of the
    environment against `cwd` (default: the working directory).
    """
    environ = os.environ if environ is None else environ
    here = Path.cwd() if cwd is None else cwd
    from_file = read_file(path) if path is not None else {}
    from_env = _from_env(environ)
    base = path.resolve().parent if path is not None else here
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for key in KEYS:
        for found, source, root in ((from_env, Source.ENV, here), (from_file, Source.FILE, base)):
            if key in found:
                value = found[key]
                if isinstance(value, Path):
                    value = (root / value).resolve()
                elif key == "store.url":
                    value = _sqlite_relative_to(value, root)
                values[key], sources[key] = value, source
                break
    _derive(values, sources, path, base)
    if values.get("store.schema") and "store.url" in values:
        values["store.url"] = in_schema(values["store.url"], values["store.schema"])
    return _build(values, path, sources)


def in_schema(url: str, schema: str) -> str:
    """A PostgreSQL `url` whose tables live in `schema` (other URLs, or one with options, as is).

    The schema goes in as the connection's search_path (libpq's `options`), which the store
    creates when it is missing (storage/migrations.py).
    """
    if not url.startswith("postgresql") or "options=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def _derive(
    values: dict[str, Any], sources: dict[str, Source], path: Path | None, base: Path
) -> None:
    """Fill the defaults that derive from the deployment (only when a configuration is in use)."""
    if not values and path is None:
        return  # nothing configured: every command keeps its own built-in defaults

    def put(key: str, value: Any) -> None:
        if key not in values:
            values[key], sources[key] = value, Source.DERIVED

    if path is not None:
        put("deployment.name", _sanitized(path.resolve().parent.name))
        put("deployment.dir", (base / KEYS["deployment.dir"].default).resolve())
    deployment_dir = values.get("deployment.dir")
    if deployment_dir is not None:
        put("store.url", f"sqlite:///{Path(deployment_dir) / 'meterseal.db'}")
        put("router.keys", Path(deployment_dir) / "router")  # where `meterseal init` puts them
        put("integrity.keys", Path(deployment_dir) / "integrity")  # not the working directory
        put("integrity.log", Path(deployment_dir) / "integrity" / "audit.log")
        put("kvs.dir", Path(deployment_dir) / "kvs")  # the local storage nodes
    name = values.get("deployment.name")
    if name:
        put("store.schema", name)
        put("nats.prefix", f"{name}_")
        put("mqtt.topic_root", f"meterseal/v1/{name}")
        put("router.namespace", f"{name}.dissem")


def _build(values: Mapping[str, Any], path: Path | None, sources: dict[str, Source]) -> Settings:
    sections = {}
    for section, cls in SECTIONS.items():
        given = {k.split(".")[1]: v for k, v in values.items() if k.startswith(f"{section}.")}
        sections[section] = cls(**given)
    return Settings(**sections, file=path, sources=sources)
