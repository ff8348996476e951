"""The settings of a deployment: typed sections, their validation, where each value came from.

A setting's value comes, highest first, from a command-line flag, an environment variable
(``MS_<SECTION>_<KEY>``), the configuration file, a default derived from other settings
(`deployment.name` and `deployment.dir`), or the built-in default. Flags are applied by the
CLI (click's default_map, config/cli.py); everything else is resolved here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _key(
    help: str,
    default: Any = None,
    *,
    flags: tuple[str, ...] = (),
    derived: str = "",
    example: str = "",
) -> Any:
    """A dataclass field with its documentation and the CLI options it feeds.

    `flags` are option names (``--store``), or ``COMMAND:--option`` for the option of the
    commands under COMMAND only (``mqtt:--prefix``, ``service run:--prefix``); `derived` says
    what the default derives from when a configuration is in use; `example` is shown in the
    template for a key that is unset by default.
    """
    meta = {"help": help, "flags": flags, "derived": derived, "example": example}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DeploymentSection:
    """[deployment]: who this deployment is and where its keys live."""

    name: str = _key(
        "namespace on shared servers: NATS stream prefix, MQTT topic root and PostgreSQL "
        "schema derive from it ([a-z][a-z0-9_]*)",
        "",
        derived="the configuration file's directory name",
    )
    dir: Path = _key(  # noqa: RUF009 - _key is a dataclasses.field
        "deployment directory (keys, certificates, fleets)",
        Path("var/deployment"),
        flags=("--deployment",),
    )
    passphrase_env: str = _key(
        "name of the environment variable holding the key passphrase (never the passphrase)",
        "MS_PASSPHRASE",
        flags=("--passphrase-env",),
    )


@dataclass(frozen=True)
class StoreSection:
    """[store]: the head-end's database."""

    url: str = _key(
        "database URL: sqlite:///FILE or cascadb:///DIRECTORY (relative to this file), or "
        "postgresql+psycopg://…",
        "sqlite:///var/meterseal.db",
        flags=("--store",),
        derived="sqlite:///DEPLOYMENT_DIR/meterseal.db",
    )
    schema: str = _key(
        "PostgreSQL only: the schema holding the store (created on first use), added to the "
        "URL as its search_path; '' for the database's default",
        "",
        derived="DEPLOYMENT_NAME",
    )


@dataclass(frozen=True)
class NatsSection:
    """[nats]: the bus of services and trusted mode."""

    url: str | None = _key(
        "NATS URL (nats:// or tls://); unset: nats://127.0.0.1:4222",
        None,
        flags=("--nats",),
        example="nats://127.0.0.1:4222",
    )
    prefix: str = _key(
        "prefix of this deployment's JetStream streams and subjects",
        "",
        flags=(
            "serve:--prefix",
            "service:--prefix",
            "kvs:--nats-prefix",
            "cascadb serve:--nats-prefix",
        ),
        derived="DEPLOYMENT_NAME_",
    )


@dataclass(frozen=True)
class MqttSection:
    """[mqtt]: topics meters publish readings on."""

    topic_root: str = _key(
        "topic root: meters publish on ROOT/readings/METER and read ROOT/acks/METER",
        "meterseal/v1",
        flags=("mqtt:--prefix", "--mqtt-prefix"),
        derived="meterseal/v1/DEPLOYMENT_NAME",
    )


@dataclass(frozen=True)
class CasSection:
    """[cas]: the configuration and attestation service of trusted mode."""

    url: str | None = _key(
        "CAS URL (trusted mode)", None, flags=("--cas",), example="http://127.0.0.1:7490"
    )


@dataclass(frozen=True)
class RouterSection:
    """[router]: the dissemination router's NATS subjects and keys."""

    namespace: str = _key(
        "subject prefix of the dissemination router and its members",
        "ms.dissem",
        flags=("router:--namespace",),
        derived="DEPLOYMENT_NAME.dissem",
    )
    keys: Path = _key(  # noqa: RUF009 - _key is a dataclasses.field
        "the router's key directory (what `meterseal init` writes as DEPLOYMENT_DIR/router)",
        Path("var/router"),
        flags=("router:--keys",),
        derived="DEPLOYMENT_DIR/router",
    )


@dataclass(frozen=True)
class IntegritySection:
    """[integrity]: the meter software integrity monitor's platform key and audit log."""

    keys: Path = _key(  # noqa: RUF009 - _key is a dataclasses.field
        "the platform key directory of `integrity keygen|embed|verify|monitor`",
        Path("var/integrity"),
        flags=("integrity:--key-dir",),
        derived="DEPLOYMENT_DIR/integrity",
    )
    log: Path = _key(  # noqa: RUF009 - _key is a dataclasses.field
        "the monitor's security audit log",
        Path("var/integrity/audit.log"),
        flags=("integrity:--log",),
        derived="DEPLOYMENT_DIR/integrity/audit.log",
    )


@dataclass(frozen=True)
class KvsSection:
    """[kvs]: the secure key-value store's gateway, its storage nodes and default policy."""

    dir: Path = _key(  # noqa: RUF009 - _key is a dataclasses.field
        "local storage: one directory per node (node-0 …) and the catalog under it",
        Path("var/kvs"),
        flags=("kvs:--dir", "cascadb serve:--dir"),
        derived="DEPLOYMENT_DIR/kvs",
    )
    nodes: int = _key(
        "number of local storage nodes (directories)",
        9,
        flags=("kvs:--nodes", "cascadb serve:--nodes"),
    )
    nats: str | None = _key(
        "NATS cluster URL of the storage nodes (unset: the local directories)",
        None,
        flags=("kvs:--nodes-nats", "cascadb serve:--nodes-nats"),
        example="nats://127.0.0.1:4222",
    )
    policy: str = _key(
        "default redundancy of a bucket: rep:N, ec:K+M or hybrid:K+M",
        "ec:6+2",
        flags=("kvs:--default-policy", "cascadb serve:--default-policy"),
    )
    listen: str = _key(
        "host:port the gateway listens on", "127.0.0.1:7470", flags=("kvs serve:--listen",)
    )
    max_object: int = _key(
        "bytes one object may have: a larger PUT is refused (413)",
        1 << 30,
        flags=("kvs serve:--max-object",),
    )
    url: str | None = _key(
        "the gateway's URL, for the client commands (unset: http://127.0.0.1:7470)",
        None,
        flags=("kvs:--gateway",),
        example="https://kvs.example:7470",
    )


@dataclass(frozen=True)
class PortalSection:
    """[portal]: what the portal's operator pages show."""

    health: str = _key(
        "services whose /readyz and /metrics the operator's Services page shows: "
        "NAME=URL pairs, comma-separated, each URL a service's admin endpoint",
        "",
        flags=("bills serve:--health",),
        example="head-end=http://127.0.0.1:7481, router=http://127.0.0.1:7482",
    )


SECTIONS: dict[str, type] = {
    "deployment": DeploymentSection,
    "store": StoreSection,
    "nats": NatsSection,
    "mqtt": MqttSection,
    "cas": CasSection,
    "router": RouterSection,
    "integrity": IntegritySection,
    "kvs": KvsSection,
    "portal": PortalSection,
}


@dataclass(frozen=True)
class KeySpec:
    """One key of the file: its section, name, type and documentation."""

    section: str
    name: str
    kind: type  # str, Path, int, float or bool
    optional: bool  # may be unset (None)
    default: Any
    help: str
    flags: tuple[str, ...]
    derived: str
    example: str

    def feeds(self, command: str, option_names: Sequence[str]) -> bool:
        """Whether this key sets the option named `option_names` of `command` ('mqtt acl')."""
        for flag in self.flags:
            under, _, name = flag.rpartition(":")
            if name in option_names and (
                not under or command == under or command.startswith(f"{under} ")
            ):
                return True
        return False

    @property
    def key(self) -> str:
        """'section.name'."""
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        """The environment variable that overrides it."""
        return f"MS_{self.section}_{self.name}".upper()


def _specs() -> dict[str, KeySpec]:
    specs = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, optional = hints[f.name], False
            if isinstance(kind, types.UnionType):  # X | None
                kind, optional = next(a for a in typing.get_args(kind) if a is not type(None)), True
            spec = KeySpec(section, f.name, kind, optional, f.default, **f.metadata)
            specs[spec.key] = spec
    return specs


KEYS: dict[str, KeySpec] = _specs()


@dataclass(frozen=True)
class Settings:
    """The effective settings (file, environment, defaults) and where each came from."""

    deployment: DeploymentSection = DeploymentSection()
    store: StoreSection = StoreSection()
    nats: NatsSection = NatsSection()
    mqtt: MqttSection = MqttSection()
    cas: CasSection = CasSection()
    router: RouterSection = RouterSection()
    integrity: IntegritySection = IntegritySection()
    kvs: KvsSection = KvsSection()
    portal: PortalSection = PortalSection()
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
