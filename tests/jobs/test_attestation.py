"""Trusted workers: a worker gets the job's key from the CAS only once it attested.

The attestation backend is the simulated one (the protocol is real, the hardware guarantee is
not): the untrusted worker quotes with another platform's key, which the CAS does not know.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from meterseal.crypto.countersign import verify_countersignature
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.jobs.attest import (
    AUTHORITY_KEY,
    JOBS_STAGE,
    AttestedKeys,
    NotAttested,
    attested_secret,
    worker_attestation,
)
from meterseal.jobs.engine import (
    ATTESTED,
    DaskClusterActuator,
    Engine,
    local_engine,
    remote_engine,
)
from meterseal.jobs.monitor import Monitor
from meterseal.jobs.runner import JobFailed, chunked, run_chunks
from meterseal.jobs.validation import Audited, audit_chunk
from meterseal.runtime.http import ThreadedServer
from meterseal.trust.api import create_cas_app
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.state import MemoryCasState
from tests.billing.conftest import Month
from tests.billing.on_disk import TARIFFS, bill_on_disk, month_on_disk, run
from tests.jobs.test_cli import FIRST, kept
from tests.jobs.test_validation import bill_all, spec_for
from tests.trust.conftest import (  # noqa: F401 - fixtures
    World,
    make_world,
    platform,
    platform_dir,
    world,
)


@contextmanager
def trusted_and_untrusted(good: AttestedKeys, bad: AttestedKeys) -> Iterator[Engine]:
    """Two thread workers in this process, each started with its own plugin."""
    from distributed import Client, Scheduler, SpecCluster, Worker

    workers = {
        name: {"cls": Worker, "options": {"nthreads": 1, "plugins": (plugin,)}}
        for name, plugin in (("trusted", good), ("untrusted", bad))
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    # distributed's constructors are unannotated
    with (
        SpecCluster(  # type: ignore[no-untyped-call]
            workers, scheduler, silence_logs=logging.CRITICAL
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.wait_for_workers(2)
        actuator = DaskClusterActuator(cluster, client)
        yield Engine(client, actuator, cluster.scheduler_address, attested=True)


def _executed(dask_worker: Any) -> int:
    return int(dask_worker.state.executed_count)


def test_an_unattested_worker_gets_no_key_and_runs_no_task(
    month: Month,
    world: World,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Set as the tutorial sets it: the CAS's copy of the key is plain all the same.
    monkeypatch.setenv("MS_PASSPHRASE", "correct horse battery staple")
    bills = bill_all(month)
    pem = month.authority_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    world.cas.put_secret(AUTHORITY_KEY, pem)
    world.cas.allow(JOBS_STAGE, stage_measurement(JOBS_STAGE), [AUTHORITY_KEY])
    elsewhere = platform(tmp_path / "elsewhere")  # a simulated platform the CAS never saw
    # The key comes from the CAS: the job's spec names no readable key file.
    spec = dataclasses.replace(spec_for(month, tmp_path), authority_key="/nonexistent.pem")
    with ThreadedServer(create_cas_app(world.cas)) as cas_url:
        spec = dataclasses.replace(spec, cas=cas_url)
        good = AttestedKeys(cas_url, world.directory)
        bad = AttestedKeys(cas_url, elsewhere)
        with trusted_and_untrusted(good, bad) as engine:
            names = {a: w["name"] for a, w in engine.client.scheduler_info()["workers"].items()}
            seen = {names[a]: v for a, v in engine.client.run(worker_attestation).items()}
            assert seen["trusted"]["attested"] is True
            assert "simulated" in seen["trusted"]["assurance"]
            assert seen["untrusted"]["attested"] is False
            assert seen["untrusted"]["refused"]  # the CAS's reason, kept for the operator
            declared = {
                w["name"]: w["resources"]
                for w in engine.client.scheduler_info()["workers"].values()
            }
            assert declared == {"trusted": {ATTESTED: 1.0}, "untrusted": {}}
            # Even sent there by hand, a task on the untrusted worker finds no key.
            where = [a for a, n in names.items() if n == "untrusted"]
            with pytest.raises(NotAttested, match="holds no attested secret"):
                engine.client.submit(attested_secret, AUTHORITY_KEY, workers=where).result()
            before = engine.client.run(_executed)
            done: dict[int, list[Audited]] = {}
            clock = itertools.count().__next__
            run = run_chunks(
                engine,
                functools.partial(audit_chunk, spec),
                chunked(bills, 1),
                done.__setitem__,
                monitor=Monitor(len(bills), 1e9, clock=clock),
                key="attested",
                interval=0.2,
            )
            after = engine.client.run(_executed)
            ran = {names[a]: n - before[a] for a, n in after.items()}
    assert sorted(done) == [0, 1]
    assert ran["untrusted"] == 0
    assert ran["trusted"] >= 2
    public = month.authority_key.public_key()
    countersigned = [a.countersigned for chunk in done.values() for a in chunk if a.countersigned]
    assert countersigned  # signed with the key the CAS released, not a file
    for signed in countersigned:
        verify_countersignature(signed, public, kid_of(public_bytes(public)))
    # The Monitor reports the trusted worker's measured memory (simulated: its process's RSS).
    snapshot = run.checks[-1][0]
    assert [name for name, _ in snapshot.trusted_measured] == ["trusted"]
    assert snapshot.trusted_measured[0][1] > 0
    assert snapshot.to_dict()["trusted_measured_mib"].keys() == {"trusted"}


def test_jobs_submit_cas_runs_on_workers_that_attested(tmp_path: Path) -> None:
    deployment, store, _ = month_on_disk(tmp_path, 2)
    run("tariffs", "add", str(TARIFFS / "tou.toml"), "--store", store)
    bill_on_disk(deployment, store, "example-tou")
    alone, spread = f"sqlite:///{tmp_path / 'alone.db'}", f"sqlite:///{tmp_path / 'spread.db'}"
    d = ["-d", str(deployment)]
    run("audit", "--store", store, "--reports", alone, *d)
    cas_world = make_world(platform(deployment), MemoryCasState())
    key_file = deployment / "metrology.key.pem"
    cas_world.cas.put_secret(AUTHORITY_KEY, key_file.read_bytes())
    cas_world.cas.allow(JOBS_STAGE, stage_measurement(JOBS_STAGE), [AUTHORITY_KEY])
    key_file.rename(tmp_path / "elsewhere.pem")  # the workers read it from the CAS only
    with ThreadedServer(create_cas_app(cas_world.cas)) as cas_url:
        out = run(
            "jobs", "submit", "validation", "--from", FIRST, "--days", "1", "--threads",
            "--chunk", "1", "--cas", cas_url, "--store", store, "--reports", spread, *d,
        )  # fmt: skip
    assert "validation: succeeded, 2 results written" in out
    attested = f"jobs-worker attestation to the CAS {cas_url}: 1 attested"
    assert f"{attested} (simulated: no hardware guarantee)" in out
    assert "memory, MiB (simulated enclave: the worker process's RSS)" in out
    assert kept(spread) == kept(alone)


def test_running_workers_attest_when_a_remote_engine_registers_the_plugin(
    world: World,  # noqa: F811
) -> None:
    # As for workers started by `dask worker` on other machines: they are running already.
    world.cas.put_secret(AUTHORITY_KEY, b"the authority's key, stand-in bytes")
    world.cas.allow(JOBS_STAGE, stage_measurement(JOBS_STAGE), [AUTHORITY_KEY])
    with (
        ThreadedServer(create_cas_app(world.cas)) as cas_url,
        local_engine(1, processes=False) as cluster,
    ):
        workers = cluster.client.scheduler_info
        assert [w["resources"] for w in workers()["workers"].values()] == [{}]
        plugin = AttestedKeys(cas_url, world.directory)
        with remote_engine(cluster.address, cluster.actuator, plugins=(plugin,)) as engine:
            assert engine.attested
            assert [w["resources"] for w in workers()["workers"].values()] == [{ATTESTED: 1.0}]
            got = engine.client.submit(attested_secret, AUTHORITY_KEY, resources={ATTESTED: 1.0})
            assert got.result() == b"the authority's key, stand-in bytes"


def test_a_job_no_worker_attested_for_fails_saying_so(
    month: Month,
    world: World,  # noqa: F811
    tmp_path: Path,
) -> None:
    # A CAS without the job's key or rule (a deployment `meterseal init` made, whose
    # meterseal.toml's cas.url makes every job attested): the tasks would wait forever.
    bills = bill_all(month)
    spec = dataclasses.replace(spec_for(month, tmp_path), authority_key="/nonexistent.pem")
    with ThreadedServer(create_cas_app(world.cas)) as cas_url:
        refused = AttestedKeys(cas_url, world.directory)
        with trusted_and_untrusted(refused, refused) as workers:
            # Each check reads its clock once, a second later: it fails at the fourth (3 s
            # after the first saw no worker attested), not at the first.
            engine = dataclasses.replace(workers, attest_grace=2.0)
            clock = itertools.count().__next__
            ticks = itertools.count()
            with pytest.raises(JobFailed, match="no worker attested to the CAS") as failed:
                run_chunks(
                    engine,
                    functools.partial(audit_chunk, dataclasses.replace(spec, cas=cas_url)),
                    chunked(bills, 1),
                    lambda index, result: None,
                    monitor=Monitor(len(bills), 1e9, clock=clock),
                    key="unattested",
                    interval=0.2,
                    clock=lambda: float(next(ticks)),
                )
    assert "meterseal cas policy add --stage jobs-worker" in str(failed.value)
    assert next(ticks) == 4
