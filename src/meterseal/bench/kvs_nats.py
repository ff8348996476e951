"""`bench kvs --nats`: Fig. 6 and the failure run again on a local NATS JetStream cluster.

Five `nats-server` processes on 127.0.0.1 (`services.nats_cluster.LocalCluster`), each one
storage node (a single-replica stream pinned to it), a replica set of 3 copies (one stream,
R=3) and the catalog (R=3). Five servers allow rep:3, ec:3+2 and hybrid:2+2 (the local
directories take the paper's 6+2). The failure run kills a server (SIGKILL), reads and writes
with it dead, wipes its store (a new disk), restarts it and times `scrub --repair`.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from meterseal.bench.kvs import FailureRow, KvsPlan, RateRow, Step, failure_run, measure_rates
from meterseal.bench.kvs_load import Layout
from meterseal.services.nats_cluster import LocalCluster, nats_server_binary

SERVERS = 5
POLICIES = ("rep:3", "ec:3+2", "hybrid:2+2")
VICTIM = "n1"


@dataclass(frozen=True)
class NatsResult:
    """Fig. 6 and the failure run on the cluster."""

    servers: int
    rates: list[RateRow]
    failures: list[FailureRow]


def nats_steps(plan: KvsPlan) -> int:
    """Progress steps of the NATS part."""
    return len(POLICIES) * (len(plan.sizes) * 3 + 1)


def _back(cluster: LocalCluster, name: str) -> None:
    """The server comes back on an empty store (a replaced disk)."""
    node = cluster.node(name)
    shutil.rmtree(node.store, ignore_errors=True)
    cluster.restart(name)
    time.sleep(1.0)  # its streams are assigned again by the meta leader


def measure_nats(root: Path, plan: KvsPlan, step: Step) -> NatsResult | None:
    """Both experiments on a fresh local cluster; None without nats-server."""
    if nats_server_binary() is None:
        return None
    with LocalCluster(root / "nats", size=SERVERS) as cluster:
        deployment = f"bench{secrets.token_hex(4)}"
        layout = Layout(
            root / "nats-unused", SERVERS, secrets.token_bytes(32), tuple(cluster.urls), deployment
        )
        rates = measure_rates(layout, POLICIES, plan, step)
        failures = []
        for text in POLICIES:
            run = failure_run(
                layout,
                text,
                plan,
                lambda: cluster.kill(VICTIM),
                lambda: _back(cluster, VICTIM),
            )
            failures.append(asyncio.run(run))
            step(f"failure run on NATS: {text}")
    return NatsResult(SERVERS, rates, failures)
