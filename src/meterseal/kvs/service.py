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

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterseal.errors import ConfigurationError, KvsError
from meterseal.kvs.freshness import marks_key
from meterseal.kvs.gateway import MAX_OBJECT_BYTES, Scrub, create_gateway_app
from meterseal.kvs.gateway_auth import KvsAuthenticator
from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.kvs.gateway_reencode import ReencodeJobs
from meterseal.kvs.gateway_state import RESERVED, GatewayState, MarksFile
from meterseal.kvs.nodes import BlobNode, Catalog, LocalDirCatalog, LocalDirNode, ReplicaSet
from meterseal.kvs.policy import Policy, Replication, parse_policy
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.service_health import NodeHealth
from meterseal.kvs.service_sweep import SWEEP_EVERY, SWEEP_GRACE, Sweeper
from meterseal.kvs.service_trust import GatewaySecrets, attest_gateway
from meterseal.kvs.store import ObjectStore

GATEWAY_PORT = 7470
CATALOG_DIR = "catalog"
MARKS_FILE = "gateway-marks"  # the key table's and registry's newest versions, sealed
HEALTH_TTL = 1.0  # seconds a node's health answer serves writes (one probe per node, not per put)


@dataclass(frozen=True)
class StoreLayout:
    """Where the storage nodes are: `nodes` directories under `dir`, or `nodes` NATS servers.

    On NATS (`nats`: one URL or several, comma-separated) the nodes are the cluster's servers
    named n1 … nN (tagged ``node:nI``), each holding a single-replica stream (fragments), rep:N
    objects go to one stream JetStream replicates on N servers, and the catalog is a stream
    replicated on up to 3 of them; `namespace` keeps this deployment's streams
    apart from another's on the same cluster.
    """

    dir: Path
    nodes: int = 9
    nats: str | None = None
    namespace: str = "kvs"

    def node_dirs(self) -> list[Path]:
        """The local nodes' directories: DIR/node-0 …"""
        return [self.dir / f"node-{i}" for i in range(self.nodes)]

    def node_names(self) -> list[str]:
        """The nodes' names (placement tags in manifests)."""
        if self.nats:
            return [f"n{i + 1}" for i in range(self.nodes)]
        return [f"node-{i}" for i in range(self.nodes)]

    def describe(self) -> str:
        """One line for the operator: what the nodes are."""
        if self.nats:
            from meterseal.runtime.address import hide_password

            return (
                f"{self.nodes} storage nodes on NATS {hide_password(self.nats)} "
                f"(servers {', '.join(self.node_names())}; streams KVS_{self.namespace}_…)"
            )
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
    sweep_every: float = SWEEP_EVERY  # seconds between sweeps of unnamed blobs (0: none)
    sweep_grace: float = SWEEP_GRACE  # seconds a blob stays unnamed before a sweep deletes it
    max_object: int = MAX_OBJECT_BYTES  # a PUT's body beyond this many bytes is refused (413)


@dataclass
class OpenStore:
    """The store engine over the layout's nodes, and what closing it takes."""

    store: ObjectStore
    close: Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


async def open_store(
    layout: StoreLayout,
    master: bytes,
    default_policy: Policy,
    rng: Callable[[int], bytes],
    *,
    bucket_key: Callable[[str], bytes] | None = None,
) -> OpenStore:
    """The store engine over the layout's nodes, bucket keys derived from `master`, or given
    by `bucket_key` (CascaDB holds one bucket's key, never the master secret)."""
    if layout.nodes < 1:
        raise ConfigurationError(f"kvs.nodes is {layout.nodes}: at least one storage node")
    if default_policy.nodes_needed > layout.nodes:
        raise ConfigurationError(
            f"the default policy {default_policy} needs {default_policy.nodes_needed} storage "
            f"nodes; there are {layout.nodes} (kvs.nodes, or another kvs.policy)"
        )
    close = _nothing
    replica_sets: list[ReplicaSet] = []
    nodes: list[BlobNode]
    catalog: Catalog
    if layout.nats:
        from meterseal.kvs.nats_nodes import MAX_REPLICAS, NatsStorage

        urls = [url.strip() for url in layout.nats.split(",") if url.strip()]
        storage = await NatsStorage.connect(urls, layout.namespace)
        close = storage.close
        try:
            nodes = [await storage.node(name, down_ok=True) for name in layout.node_names()]
            # rep:N goes to one stream JetStream itself keeps on N servers, not N node streams
            replica_sets = [
                await storage.replica_set(copies, down_ok=True)
                for copies in range(2, min(MAX_REPLICAS, layout.nodes) + 1)
            ]
            catalog = await storage.catalog(min(3, layout.nodes))
        except BaseException:
            await close()
            raise
    else:
        nodes = [
            LocalDirNode(name, path)
            for name, path in zip(layout.node_names(), layout.node_dirs(), strict=True)
        ]
        catalog = LocalDirCatalog(layout.dir / CATALOG_DIR)
    store = ObjectStore(
        nodes,
        catalog,
        bucket_key or (lambda bucket: derive_bucket_key(master, bucket)),
        clock=time.time,
        rng=rng,
        replica_sets=replica_sets,
        default_policy=default_policy,
        health_ttl=HEALTH_TTL,
    )
    return OpenStore(store, close)


def gateway_state(store: ObjectStore, layout: StoreLayout, default_policy: Policy) -> GatewayState:
    """The key table and bucket policies of the gateway over `store`, their versions marked
    in `layout.dir` (a rolled-back table is refused, also after a restart)."""
    key = marks_key(store.keys(RESERVED).manifest)
    marks = MarksFile(layout.dir / MARKS_FILE, key, store.rng)
    return GatewayState(store, default_policy, layout.internal_policy(), marks=marks)


def store_scrub(store: ObjectStore, state: GatewayState) -> Scrub:
    """The gateway's scrub: every bucket written to (and its own), repaired when asked."""

    async def scrub(repair: bool) -> dict[str, Any]:
        from meterseal.kvs.repair import scrub as scrub_store

        buckets = [RESERVED, *await state.buckets()]
        report = await scrub_store(store, buckets, repair)
        return {**dataclasses.asdict(report), "buckets": len(buckets), "healthy": report.healthy}

    return scrub


def build_gateway(
    store: ObjectStore,
    layout: StoreLayout,
    default_policy: Policy,
    metrics: KvsMetrics,
    state: GatewayState | None = None,
    max_object: int = MAX_OBJECT_BYTES,
) -> Any:
    """The gateway's app over `store` (its keys and bucket policies kept in it)."""
    state = state or gateway_state(store, layout, default_policy)
    authenticator = KvsAuthenticator(state.key_table)
    scrub = store_scrub(store, state)
    return create_gateway_app(
        store, state, authenticator, metrics, scrub=scrub, max_object=max_object
    )


async def serve_gateway(
    options: GatewayOptions,
    *,
    secrets: GatewaySecrets | None = None,
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
    stop: asyncio.Event | None = None,
    own_process: bool = False,
) -> None:
    """Attest (unless `secrets` are given), open the store, serve until stopped.

    `own_process` (`kvs serve`): the process is the gateway's alone, so its C heap thresholds
    and garbage collector are set for it; they are process-wide, so not in a host's process.
    """
    from meterseal.runtime.heap import freeze_startup, hold_freed_memory
    from meterseal.runtime.http import HttpAppService
    from meterseal.runtime.lifecycle import serve_stage
    from meterseal.runtime.readiness import Readiness
    from meterseal.runtime.tls import server_context

    if secrets is None:
        secrets = attest_gateway(
            options.cas_url, options.deployment, tls=options.tls, passphrase=options.passphrase
        )
    announce(f"keys from {secrets.provenance}")
    if own_process:  # chunk-sized buffers reused, not faulted in again on every request
        hold_freed_memory()
    announce(options.layout.describe())
    policy = parse_policy(options.default_policy)
    opened = await open_store(options.layout, secrets.master, policy, os.urandom)
    try:
        metrics = KvsMetrics()
        state = gateway_state(opened.store, options.layout, policy)
        app = build_gateway(
            opened.store, options.layout, policy, metrics, state, options.max_object
        )
        sweeper = Sweeper(opened.store, state, options.sweep_every, options.sweep_grace)
        tls = None if secrets.tls is None else server_context(secrets.tls)
        health = NodeHealth(opened.store.nodes, policy)
        await health.probe()
        watching = [asyncio.create_task(health.watch())]
        if options.sweep_every > 0:
            watching.append(asyncio.create_task(sweeper.watch()))
        service = HttpAppService(
            "kvs", app, options.listen, GATEWAY_PORT, tls, Readiness(health.reason, every=1.0)
        )
        metrics.register(service.metrics.registry)
        sweeper.metrics.register(service.metrics.registry)
        if own_process:  # the app and its modules: never walked by a full collection again
            freeze_startup()
        reencoding: ReencodeJobs = app.state.reencoding
        try:
            for bucket in await reencoding.resume():
                announce(f"re-encoding bucket {bucket} resumed")
        except KvsError as exc:  # the nodes may be back later: the next start resumes them
            announce(f"re-encoding jobs not resumed: {exc}")
        try:
            await serve_stage(service, admin=options.admin, announce=announce, stop=stop)
        finally:
            for task in watching:
                task.cancel()
            await reencoding.close()
    finally:
        await opened.close()


@asynccontextmanager
async def attested_store(
    options: GatewayOptions, announce: Callable[[str], None] = lambda _: None
) -> AsyncIterator[GatewayState]:
    """The gateway's state after attesting as the gateway (`meterseal kvs keys …`)."""
    secrets = attest_gateway(options.cas_url, options.deployment, passphrase=options.passphrase)
    announce(f"keys from {secrets.provenance}")  # the attestation backend, simulated or not
    policy = parse_policy(options.default_policy)
    opened = await open_store(options.layout, secrets.master, policy, os.urandom)
    try:
        yield gateway_state(opened.store, options.layout, policy)
    finally:
        await opened.close()
