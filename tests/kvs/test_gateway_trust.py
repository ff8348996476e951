"""The gateway's keys come from the CAS after attestation, and only then.

The attestation backend is the simulated one (a platform key file signs quotes): the
protocol is real, the hardware guarantee is not.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from meterseal.crypto import certs
from meterseal.kvs.gateway_http import KvsMetrics
from meterseal.kvs.policy import parse_policy
from meterseal.kvs.service import StoreLayout, build_gateway
from meterseal.kvs.service_trust import (
    KVS_STAGE,
    MASTER_SECRET,
    attest_gateway,
    provision_gateway,
)
from meterseal.runtime.http import ThreadedServer
from meterseal.runtime.tls import client_context, server_context
from meterseal.services.trusted_setup import issue_worker_tls
from meterseal.trust.api import create_cas_app
from meterseal.trust.attestation import SimulatedAttester
from meterseal.trust.errors import ReleaseRefused
from meterseal.trust.measurement import measure
from meterseal.trust.state import MemoryCasState
from meterseal.trust.worker import tls_secret
from tests.kvs.store_fixtures import memory_store
from tests.tls import served_certificate
from tests.trust.conftest import World, make_world, platform


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A CAS over memory state trusting a simulated platform of a fresh directory."""
    return make_world(platform(tmp_path / "deployment"), MemoryCasState())


@pytest.fixture
def cas_url(world: World) -> Iterator[str]:
    """The CAS over HTTP (its release needs no TLS: secrets are sealed to the quote's key)."""
    with ThreadedServer(create_cas_app(world.cas)) as url:
        yield url


def test_the_attested_gateway_receives_the_master_secret(world: World, cas_url: str) -> None:
    done = provision_gateway(world.cas, os.urandom)
    assert done.secrets == {MASTER_SECRET: (1, True)}
    secrets = attest_gateway(cas_url, world.directory, attester=world.attester)
    assert len(secrets.master) == 32
    assert secrets.tls is None
    assert "simulated" in secrets.provenance
    assert done.measurement.short in secrets.provenance
    assert secrets.master.hex() not in repr(secrets)
    # provisioning again keeps the master secret: every object is sealed under it
    again = provision_gateway(world.cas, os.urandom)
    assert again.secrets == {MASTER_SECRET: (1, False)}
    assert (
        attest_gateway(cas_url, world.directory, attester=world.attester).master == secrets.master
    )


def test_a_gateway_whose_platform_the_cas_does_not_trust_gets_no_key(
    world: World, cas_url: str, tmp_path: Path
) -> None:
    provision_gateway(world.cas, os.urandom)
    other = platform(tmp_path / "elsewhere")  # another (simulated) machine's attestation key
    with pytest.raises(ReleaseRefused):
        attest_gateway(cas_url, world.directory, attester=SimulatedAttester.from_deployment(other))


def test_a_gateway_whose_code_changed_gets_no_key(world: World, cas_url: str) -> None:
    # the CAS allows the secret to another measurement only (the gateway's code as it was)
    world.cas.put_secret(MASTER_SECRET, os.urandom(32))
    world.cas.allow(
        KVS_STAGE, measure(["meterseal.kvs.policy"], {"stage": KVS_STAGE}), [MASTER_SECRET]
    )
    with pytest.raises(ReleaseRefused) as refused:
        attest_gateway(cas_url, world.directory, attester=world.attester)
    assert MASTER_SECRET in refused.value.diagnostics()


def test_a_gateway_without_a_policy_gets_no_key(world: World, cas_url: str) -> None:
    world.cas.put_secret(MASTER_SECRET, os.urandom(32))
    with pytest.raises(ReleaseRefused):
        attest_gateway(cas_url, world.directory, attester=world.attester)


def test_the_gateway_serves_https_with_the_key_the_cas_released_to_it(
    world: World, cas_url: str
) -> None:
    ca_key, ca_cert = certs.create_ca("kvs CA", now=dt.datetime.now(dt.UTC), rng=os.urandom)
    (world.directory / "ca.cert.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    done = provision_gateway(
        world.cas,
        os.urandom,
        issue_tls=lambda cas, stage: issue_worker_tls(cas, ca_key, ca_cert, stage, ["127.0.0.1"]),
        hosts=["127.0.0.1"],
    )
    assert set(done.names) == {MASTER_SECRET, tls_secret(KVS_STAGE)}
    secrets = attest_gateway(cas_url, world.directory, tls=True, attester=world.attester)
    assert secrets.tls is not None
    assert certs.service_of(secrets.tls.certificate) == KVS_STAGE
    store, _nodes, _catalog = memory_store(5)
    app = build_gateway(store, StoreLayout(world.directory, 5), parse_policy("rep:2"), KvsMetrics())
    with ThreadedServer(app, tls=server_context(secrets.tls)) as url:
        verify = client_context(ca_cert)
        assert served_certificate(url, verify) == secrets.tls.certificate.public_bytes(
            serialization.Encoding.DER
        )
        with httpx.Client(verify=verify) as client:  # TLS ends in the gateway; keys still rule
            assert client.get(f"{url}/v1/kvs/meters/x").status_code == 401
