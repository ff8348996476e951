"""A trusted worker's TLS key comes from the CAS, released to its attested measurement.

The attestation backend is the simulated one: the protocol is real, the hardware guarantee
is not. The CAS itself is served over TLS with a certificate of the same deployment CA.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto import certs
from meterseal.runtime.http import ThreadedServer, service_app
from meterseal.runtime.tls import TlsIdentity, client_context, server_context
from meterseal.services.trusted_setup import issue_worker_tls
from meterseal.trust.api import create_cas_app
from meterseal.trust.errors import ReleaseRefused
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.worker import start_trusted, tls_secret
from tests.tls import served_certificate
from tests.trust.conftest import World

STAGE = "billing"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def ca(world: World) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The deployment CA, its certificate where workers look for it."""
    key, cert = certs.create_ca("worker TLS CA", now=NOW, rng=os.urandom)
    (world.directory / "ca.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture
def cas_url(world: World, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> Iterator[str]:
    """The CAS over TLS, holding the stage's TLS identity and allowing it to the stage."""
    ca_key, ca_cert = ca
    issue_worker_tls(world.cas, ca_key, ca_cert, STAGE, ["127.0.0.1"])
    world.cas.allow(STAGE, stage_measurement(STAGE), [tls_secret(STAGE)])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certs.issue_service_certificate(
        ca_key, ca_cert, "cas", key.public_key(), hosts=["127.0.0.1"], now=NOW, rng=os.urandom
    )
    tls = server_context(TlsIdentity((cert,), key), ca_cert)
    with ThreadedServer(create_cas_app(world.cas), tls=tls) as url:
        yield url


def _files_under(directory: Path) -> list[bytes]:
    return [p.read_bytes() for p in directory.rglob("*") if p.is_file()]


def test_the_worker_serves_https_with_the_key_the_cas_released_to_it(
    world: World, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cas_url: str
) -> None:
    assert cas_url.startswith("https://")
    worker = start_trusted(
        STAGE, cas_url, world.directory, names=[tls_secret(STAGE)], attester=world.attester
    )
    identity = worker.tls_identity()
    assert identity is not None
    assert certs.service_of(identity.certificate) == STAGE
    # the key exists only in the CAS (sealed under its master key) and in this process
    key_der = identity.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert not any(
        key_der in data or identity.pem()[:200] in data for data in _files_under(world.directory)
    )
    app = service_app("worker admin", "The worker's admin endpoint.", Counter(), lambda: {})
    with ThreadedServer(app, tls=server_context(identity, ca[1])) as url:
        verify = client_context(ca[1])
        with httpx.Client(verify=verify, timeout=10) as client:
            assert client.get(url + "/healthz").json() == {"status": "ok"}
        served = served_certificate(url, verify)
    assert served == identity.certificate.public_bytes(serialization.Encoding.DER)
    released = world.cas.state.latest_secret(tls_secret(STAGE))
    assert released is not None
    assert released.version == 1


def test_a_modified_worker_gets_no_tls_key(world: World, cas_url: str) -> None:
    with pytest.raises(ReleaseRefused, match=r"is not allowed secret 'tls/billing'"):
        start_trusted(
            STAGE,
            cas_url,
            world.directory,
            names=[tls_secret(STAGE)],
            config={"changed": True},  # another measurement, as modified code would have
            attester=world.attester,
        )


def test_a_worker_claiming_another_stage_gets_no_tls_key(world: World, cas_url: str) -> None:
    # the billing worker's TLS key, asked for by a worker measured as another stage
    with pytest.raises(ReleaseRefused, match="not allowed secret 'tls/billing'"):
        start_trusted(
            "open-verify",
            cas_url,
            world.directory,
            names=[tls_secret(STAGE)],
            attester=world.attester,
        )
