"""The KVS gateway as a running service: attested, over its storage nodes, serving the API.

`meterseal kvs serve` builds a `GatewayOptions` from its flags and the [kvs] section and
calls `serve_gateway`: attest to the CAS (`service_trust.attest_gateway`: no attestation, no
key, no gateway), open the store over the nodes (`StoreLayout`: one directory per node under
`kvs.dir` by default), and serve the API (`gateway.create_gateway_app`) under the runtime's
lifecycle, with HTTPS ending inside the gateway when the CAS released a TLS identity.
`meterseal kvs keys …` runs `attested_store` to change the key table the same way, attested as
the gateway (the table is sealed under the master secret, which only the gateway holds).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterseal.errors import ConfigurationError, KvsError
from meterseal.kvs.gateway import create_gateway_app
from meterseal.kvs.gateway_auth import KvsAuthenticator
from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.kvs.gateway_state import GatewayState
from meterseal.kvs.nodes import BlobNode, LocalDirCatalog, LocalDirNode
from meterseal.kvs.policy import Policy, Replication, parse_policy
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.service_trust import GatewaySecrets, attest_gateway
from meterseal.kvs.store import ObjectStore

GATEWAY_PORT = 7470
CATALOG_DIR = "catalog"


@dataclass(frozen=True)
class StoreLayout:
    """Where the storage nodes are: `nodes` directories under `dir` (or a NATS cluster)."""

    dir: Path
    nodes: int = 9
    nats: str | None = None

    def node_dirs(self) -> list[Path]:
        """The local nodes' directories: DIR/node-0 …"""
        return [self.dir / f"node-{i}" for i in range(self.nodes)]

    def describe(self) -> str:
        """One line for the operator: what the nodes are."""
        if self.nats:
            return f"storage nodes on NATS {self.nats}"
        return f"{self.nodes} local storage nodes under {self.dir} (catalog {CATALOG_DIR}/)"

    def internal_policy(self) -> Policy:
        """How the gateway's own objects (keys, bucket policies) are kept: 3 copies at most."""
        return Replication(max(1, min(3, self.nodes)))


@dataclass(frozen=True)
class GatewayOptions:
    """What `meterseal kvs serve` was asked for."""

    deployment: Path
    cas_url: str
    layout: StoreLayout
    default_policy: str = "ec:6+2"
    listen: str = f"127.0.0.1:{GATEWAY_PORT}"
    tls: bool = False  # serve HTTPS with the TLS identity the CAS releases to the gateway
    admin: str | None = "127.0.0.1:0"
    passphrase: bytes | None = field(default=None, repr=False)


def open_store(
    layout: StoreLayout, master: bytes, default_policy: Policy, rng: Callable[[int], bytes]
) -> ObjectStore:
    """The store engine over the layout's nodes, bucket keys derived from `master`."""
    if layout.nats:
        raise ConfigurationError(
            "storage nodes on NATS (kvs.nats) are not wired into the gateway yet: unset kvs.nats "
            "to use the local directories"
        )
    if layout.nodes < 1:
        raise ConfigurationError(f"kvs.nodes is {layout.nodes}: at least one storage node")
    nodes: list[BlobNode] = [
        LocalDirNode(f"node-{i}", path) for i, path in enumerate(layout.node_dirs())
    ]
    if default_policy.nodes_needed > len(nodes):
        raise ConfigurationError(
            f"the default policy {default_policy} needs {default_policy.nodes_needed} storage "
            f"nodes; there are {len(nodes)} (kvs.nodes, or another kvs.policy)"
        )
    return ObjectStore(
        nodes,
        LocalDirCatalog(layout.dir / CATALOG_DIR),
        lambda bucket: derive_bucket_key(master, bucket),
        clock=time.time,
        rng=rng,
        default_policy=default_policy,
    )


def gateway_state(store: ObjectStore, layout: StoreLayout, default_policy: Policy) -> GatewayState:
    """The key table and bucket policies of the gateway over `store`."""
    return GatewayState(store, default_policy, layout.internal_policy())


def build_gateway(
    options: GatewayOptions, secrets: GatewaySecrets
) -> tuple[Any, KvsMetrics, ObjectStore]:
    """The gateway's app, its metrics (to register) and its store, from attested secrets."""
    policy = parse_policy(options.default_policy)
    store = open_store(options.layout, secrets.master, policy, os.urandom)
    state = gateway_state(store, options.layout, policy)
    metrics = KvsMetrics()
    app = create_gateway_app(store, state, KvsAuthenticator(state.key_table), metrics)
    return app, metrics, store


async def serve_gateway(
    options: GatewayOptions,
    *,
    secrets: GatewaySecrets | None = None,
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    """Attest (unless `secrets` are given), open the store, serve until stopped."""
    from meterseal.runtime.http import HttpAppService
    from meterseal.runtime.lifecycle import serve_stage
    from meterseal.runtime.tls import server_context

    if secrets is None:
        secrets = attest_gateway(
            options.cas_url, options.deployment, tls=options.tls, passphrase=options.passphrase
        )
    announce(f"keys from {secrets.provenance}")
    announce(options.layout.describe())
    app, metrics, _store = build_gateway(options, secrets)
    tls = None if secrets.tls is None else server_context(secrets.tls)
    service = HttpAppService("kvs", app, options.listen, GATEWAY_PORT, tls)
    metrics.register(service.metrics.registry)
    await serve_stage(service, admin=options.admin, announce=announce)


@asynccontextmanager
async def attested_store(options: GatewayOptions) -> AsyncIterator[GatewayState]:
    """The gateway's state after attesting as the gateway (`meterseal kvs keys …`)."""
    secrets = attest_gateway(options.cas_url, options.deployment, passphrase=options.passphrase)
    policy = parse_policy(options.default_policy)
    try:
        store = open_store(options.layout, secrets.master, policy, os.urandom)
    except KvsError as exc:
        raise ConfigurationError(f"cannot open the KVS: {exc}") from exc
    yield gateway_state(store, options.layout, policy)
