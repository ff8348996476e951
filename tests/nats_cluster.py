"""A local NATS JetStream cluster of a test's own: 3 to 5 servers, placement tags, own stores."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseal.services.nats_cluster import LocalCluster, nats_server_binary
from tests.services import REQUIRE_ENV, services_required


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
