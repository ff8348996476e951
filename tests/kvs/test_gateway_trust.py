"""The gateway's keys come from the CAS after attestation, and only then.

The attestation backend is the simulated one (a platform key file signs quotes): the
protocol is real, the hardware guarantee is not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterseal.kvs.service_trust import (
    KVS_STAGE,
    MASTER_SECRET,
    attest_gateway,
    provision_gateway,
)
from meterseal.runtime.http import ThreadedServer
from meterseal.trust.api import create_cas_app
from meterseal.trust.attestation import SimulatedAttester
from meterseal.trust.errors import ReleaseRefused
from meterseal.trust.measurement import measure
from meterseal.trust.state import MemoryCasState
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
