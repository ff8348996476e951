"""The engine under the jobs: Dask distributed, and the actuator that scales it.

The embedded default is a `distributed.LocalCluster` of worker processes on this machine
(`processes=False` keeps them as threads in this process, for tests). The Controller acts
through an `Actuator`; `DaskClusterActuator` is the cluster's own scaling (`cluster.scale`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from meterseal.errors import ConfigurationError

if TYPE_CHECKING:
    from distributed import Client, SpecCluster


class Actuator(Protocol):
    """What the Controller changes: the number of workers the job runs on."""

    def workers(self) -> int:
        """The workers the job runs on: those asked for, which the Controller acts from."""
        ...

    def scale(self, workers: int) -> None:
        """Ask for `workers` workers (they join or leave in the background)."""
        ...


class DaskClusterActuator:
    """The Dask cluster's own scaling: `cluster.scale(n)` adds or retires local workers."""

    def __init__(self, cluster: SpecCluster, client: Client) -> None:
        self.cluster = cluster
        self.client = client

    def workers(self) -> int:
        """The workers the cluster was asked for (`worker_spec`), starting ones included.

        Not those connected: a worker process takes seconds to start, and a Controller that
        saw only connected workers would ask again at every check until it had joined.
        """
        return len(self.cluster.worker_spec)

    def connected(self) -> int:
        """The workers the scheduler knows now."""
        return len(self.client.scheduler_info()["workers"])

    def scale(self, workers: int) -> None:
        """Ask the cluster for `workers` workers."""
        self.cluster.scale(workers)  # type: ignore[no-untyped-call]


TRUSTED_MEMORY = "TRUSTED_MEMORY_MB"  # the Dask resource: enclave (EPC) memory in MiB
ATTESTED = "ATTESTED"  # the Dask resource a worker the CAS released keys to declares (jobs.attest)
MIB = 1024 * 1024


@dataclass
class Engine:
    """A Dask client on a cluster, and the actuator the Controller scales it with."""

    client: Client
    actuator: Actuator
    address: str
    attested: bool = False  # every task needs an attested worker (jobs.attest's plugin)
    # Seconds an attested run waits with workers but none attested before it fails: a worker
    # that joins or restarts registers first and attests after (measures its code, then two
    # CAS calls of up to AttestedKeys' 10 s timeout each).
    attest_grace: float = 60.0

    def trusted_memory(self) -> tuple[float, float]:
        """Trusted memory (MiB) the running tasks hold and the workers declare, cluster-wide."""
        held = declared = 0.0
        for worker in self.client.scheduler_info()["workers"].values():
            declared += worker.get("resources", {}).get(TRUSTED_MEMORY, 0.0)
        if declared:
            used = self.client.run(_trusted_in_use)
            held = float(sum(used.values()))
        return held, declared

    def trusted_workers(self) -> dict[str, float]:
        """Each trusted worker's measured trusted memory in MiB, by worker name.

        Simulated enclave: no EPC to read, so the figure is the worker process's resident
        memory as Dask measured it at the worker's last heartbeat (workers that are threads
        of one process each report that process). On an attested engine only the workers
        that attested count as trusted.
        """
        found: dict[str, float] = {}
        for address, worker in self.client.scheduler_info()["workers"].items():
            if self.attested and ATTESTED not in worker.get("resources", {}):
                continue
            rss = worker.get("metrics", {}).get("memory", 0) or 0
            found[str(worker.get("name", address))] = float(rss) / MIB
        return found


def _trusted_in_use(dask_worker: Any) -> float:
    """On a worker: the trusted memory its executing tasks hold (declared minus available)."""
    state = dask_worker.state
    total = state.total_resources.get(TRUSTED_MEMORY, 0.0)
    return float(total - state.available_resources.get(TRUSTED_MEMORY, total))


@contextmanager
def local_engine(
    workers: int = 1,
    *,
    processes: bool = True,
    threads_per_worker: int = 1,
    trusted_memory: float | None = None,
    plugins: Sequence[Any] = (),
    attested: bool = False,
) -> Iterator[Engine]:
    """A LocalCluster of `workers` (processes unless told), its client and its actuator.

    `trusted_memory` (MiB) is each worker's declared enclave memory, a Dask resource: the
    scheduler never runs tasks on a worker whose needs together exceed it. `plugins` go to
    every worker at its start (jobs.attest's `AttestedKeys`), before it registers; with
    `attested`, every task needs a worker that attested.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the extra names it
        raise ConfigurationError("the jobs need Dask: pip install 'meterseal[jobs]'") from exc
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers,
        threads_per_worker=threads_per_worker,
        processes=processes,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,  # a closing cluster's heartbeats are not errors
        resources=None if trusted_memory is None else {TRUSTED_MEMORY: trusted_memory},
        **({"plugins": tuple(plugins)} if plugins else {}),
    )
    try:
        client = Client(cluster)  # type: ignore[no-untyped-call]
        try:
            actuator = DaskClusterActuator(cluster, client)
            yield Engine(client, actuator, cluster.scheduler_address, attested)
        finally:
            client.close()  # type: ignore[no-untyped-call]
    finally:
        cluster.close()


@contextmanager
def remote_engine(
    address: str, actuator: Actuator, plugins: Sequence[Any] = ()
) -> Iterator[Engine]:
    """A client of a running `dask scheduler` at `address`, scaled through `actuator`.

    `plugins` are registered on every worker, those running and those that join later
    (jobs.attest's `AttestedKeys`: the engine is then an attested one).
    """
    from distributed import Client

    client = Client(address)  # type: ignore[no-untyped-call]
    try:
        for plugin in plugins:
            client.register_plugin(plugin)
        yield Engine(client, actuator, address, attested=bool(plugins))
    finally:
        client.close()  # type: ignore[no-untyped-call]
