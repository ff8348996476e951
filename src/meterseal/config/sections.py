"""The keys of meterseal.toml: one dataclass per [section], each key's type, default and help.

`SECTIONS` maps a section's name to its dataclass, `KEYS` every 'section.name' to its
`KeySpec`, which config/render.py writes the template from and config/cli.py matches against
the commands' options. Reading, checking and layering the values is settings.py's.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    listen: str = _key(
        "host:port the CAS listens on (`meterseal init --cas-listen` writes it)",
        "127.0.0.1:7490",
        flags=("cas serve:--listen",),
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
    sweep_every: float = _key(
        "seconds between the gateway's sweeps of blobs no manifest names (0: never)",
        600.0,
        flags=("kvs serve:--sweep-every",),
    )
    url: str | None = _key(
        "the gateway's URL, for the client commands (unset: http://127.0.0.1:7470)",
        None,
        flags=("kvs:--gateway", "cascadb sql:--gateway"),
        example="https://kvs.example:7470",
    )


@dataclass(frozen=True)
class CascadbSection:
    """[cascadb]: the CascaDB server (`cascadb serve`)."""

    idle_in_transaction_timeout: float = _key(
        "seconds a PostgreSQL session may idle inside a transaction block, or holding the "
        "write lock, before it is ended and rolled back (FATAL 25P03; 0: no limit)",
        60.0,
        flags=("cascadb serve:--idle-in-transaction-timeout",),
    )


@dataclass(frozen=True)
class AgentSection:
    """[agent]: the meter-side sealing agent (`agent run`)."""

    spool_keep_seconds: int = _key(
        "seconds of intervals the agent's spool keeps sealed packets to resend (1 to "
        "3456000, the head-end's freshness window: older ones it would refuse)",
        3_456_000,
        flags=("agent run:--spool-keep-seconds",),
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
    "cascadb": CascadbSection,
    "agent": AgentSection,
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
