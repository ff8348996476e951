"""A local NATS JetStream cluster of a test's own: 3 to 5 servers, placement tags, own stores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseal.kvs.nats_nodes import NatsStorage
from meterseal.services.nats_cluster import LocalCluster, nats_server_binary
from tests.services import REQUIRE_ENV, services_required

# A bound, not a measure: a loaded 2-core CI machine took over 10 s to elect the catalog's
# leader after a server came back on an empty disk.
LEADER_WAIT = 60.0


def require_nats_cluster() -> str:
    """The nats-server binary; skip (fail under MS_REQUIRE_SERVICES=1) when it is absent."""
    found = nats_server_binary(os.environ.get("MS_NATS_SERVER"))
    if found is None:
        message = "nats-server binary not found (set MS_NATS_SERVER) for the local NATS cluster"
        if services_required():
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)
    return found


@contextlib.contextmanager
def running_cluster(
    directory: Path, size: int = 3, *, max_payload: int | None = None
) -> Iterator[LocalCluster]:
    """Start `size` servers under `directory` (own ports, stores, cluster name); stop after."""
    cluster = LocalCluster(directory, size, binary=require_nats_cluster(), max_payload=max_payload)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def stream_peers(storage: NatsStorage, stream: str) -> list[str]:
    """The servers of a replicated stream, its leader first (waits up to 60 s for one)."""
    deadline = time.monotonic() + LEADER_WAIT
    while time.monotonic() < deadline:
        try:
            info = await storage.jetstream().stream_info(stream)
        except TimeoutError:  # nats-py's, a subclass: no leader to answer yet
            continue
        if info.cluster is not None and info.cluster.leader:
            return [info.cluster.leader, *(str(r.name) for r in info.cluster.replicas or [])]
        await asyncio.sleep(0.2)
    raise AssertionError(f"stream {stream} has no leader")
