"""Trusted Dask workers: each attests to the CAS before it gets the job's keys (a plugin).

`AttestedKeys` is a Dask `WorkerPlugin` given to every worker at its start. In `setup` the
worker measures its code as the `jobs-worker` stage, quotes the measurement with its
platform's attester (the simulated backend unless given another: a protocol without a
hardware guarantee, docs/trust.md) and fetches the job's secrets from the CAS
(`start_trusted`, all or none); a client may also register it on running workers
(`client.register_plugin`: workers started by `dask worker` elsewhere, and those that join
later). Only then does a worker declare the Dask resource `ATTESTED`
(one per thread), which every task of an attested engine needs: a worker the CAS refused
keeps no key and the scheduler never gives it a task. Its refusal is kept for the Monitor.

A task reads the authority's key through `attested_secret(name)`, from the worker it runs on.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterseal.errors import ConfigurationError, MetersealError
from meterseal.jobs.engine import ATTESTED
from meterseal.trust.attestation import Attester
from meterseal.trust.worker import start_trusted

if TYPE_CHECKING:
    from distributed import Worker

JOBS_STAGE = "jobs-worker"
AUTHORITY_KEY = "jobs/metrology-key"


class NotAttested(MetersealError):
    """A task asked for a key on a worker that did not attest (the scheduler should not
    have sent it there)."""


@dataclass(frozen=True)
class Attestation:
    """What one worker's attestation gave: its secrets, or why the CAS refused it."""

    measurement: str  # short hex
    assurance: str  # "simulated: no hardware guarantee", or the backend's own words
    secrets: dict[str, bytes] = field(repr=False, default_factory=dict)
    refused: str | None = None


_BY_WORKER: weakref.WeakKeyDictionary[Any, Attestation] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
# One attestation at a time per process: measuring parses the stage's modules, and CPython's
# AST constructor is not safe in two threads at once (workers as threads of one process
# failed with "AST constructor recursion depth mismatch").
_ATTESTING = threading.Lock()


def _plugin_base() -> type:
    try:
        from distributed import WorkerPlugin
    except ImportError as exc:  # pragma: no cover - the extra names it
        raise ConfigurationError("the jobs need Dask: pip install 'meterseal[jobs]'") from exc
    return WorkerPlugin


class AttestedKeys(_plugin_base()):  # type: ignore[misc]
    """Attest this worker to the CAS at `cas_url` and hold the secrets `names` it releases.

    `deployment_dir` is read on the worker's machine: the simulated platform's key there.
    """

    name = "meterseal-attested-keys"

    def __init__(
        self,
        cas_url: str,
        deployment_dir: Path,
        names: Sequence[str] = (AUTHORITY_KEY,),
        *,
        attester: Attester | None = None,
        config: Mapping[str, object] | None = None,
        timeout: float = 10.0,
        passphrase_env: str = "MS_PASSPHRASE",  # noqa: S107 - a variable name
    ) -> None:
        self.cas_url = cas_url
        self.deployment_dir = deployment_dir
        self.names = tuple(names)
        self.attester = attester  # None: the deployment's simulated platform
        self.config = dict(config or {})
        self.timeout = timeout
        self.passphrase_env = passphrase_env  # of the platform's key files, on the worker

    async def setup(self, worker: Worker) -> None:
        """Attest (in a thread: the CAS call blocks); declare ATTESTED only if released."""
        import asyncio

        attestation = await asyncio.to_thread(self._attest)
        with _LOCK:
            _BY_WORKER[worker] = attestation
        if attestation.refused is None:
            from distributed.core import Status

            threads = float(worker.state.nthreads)
            if worker.status == Status.running:  # registered already (`register_plugin`)
                await declare_attested(worker, threads)
                return
            # Before the worker registers, its declared resources go with its registration.
            worker.state.total_resources[ATTESTED] = threads
            worker.state.available_resources[ATTESTED] = threads

    def teardown(self, worker: Worker) -> None:
        """Forget the worker's secrets."""
        with _LOCK:
            _BY_WORKER.pop(worker, None)

    def _attest(self) -> Attestation:
        with _ATTESTING:
            return self._attest_now()

    def _attest_now(self) -> Attestation:
        try:
            trusted = start_trusted(
                JOBS_STAGE,
                self.cas_url,
                self.deployment_dir,
                names=self.names,
                config=self.config,
                attester=self.attester,
                timeout=self.timeout,
                passphrase=os.environ[self.passphrase_env].encode()
                if os.environ.get(self.passphrase_env)
                else None,
            )
        except (MetersealError, OSError) as exc:  # refused, unreachable, no platform key
            return Attestation("-", "-", refused=f"{type(exc).__name__}: {exc}")
        return Attestation(trusted.measurement.short, trusted.assurance, dict(trusted.secrets))


async def declare_attested(worker: Any, threads: float) -> None:
    """Declare ATTESTED on a running, registered worker; tasks that waited for one start."""
    from distributed.core import Status

    await worker.set_resources(**{ATTESTED: threads})
    # The scheduler looks again at tasks no worker could run ("no-worker": a job submitted
    # before any worker attested) when a worker joins or resumes, not when a worker's
    # resources change: without this pause and resume they would wait forever.
    worker.status = Status.paused
    worker.status = Status.running


def attestation_of(worker: Any) -> Attestation | None:
    """The attestation of `worker` (a Dask Worker), None if it ran no AttestedKeys."""
    with _LOCK:
        return _BY_WORKER.get(worker)


def attested_secret(name: str) -> bytes:
    """Inside a task: the secret `name` the CAS released to the worker running it."""
    from distributed import get_worker

    worker = get_worker()
    attestation = attestation_of(worker)
    if attestation is None or attestation.refused is not None or name not in attestation.secrets:
        raise NotAttested(f"worker {worker.name} holds no attested secret {name!r}")
    return attestation.secrets[name]


def worker_attestation(dask_worker: Any) -> dict[str, Any]:
    """On a worker (`client.run`): whether it attested, its measurement, or the refusal."""
    attestation = attestation_of(dask_worker)
    if attestation is None:
        return {"attested": False, "refused": "no attestation plugin"}
    return {
        "attested": attestation.refused is None,
        "measurement": attestation.measurement,
        "assurance": attestation.assurance,
        "refused": attestation.refused,
    }
