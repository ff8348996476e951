"""Trusted mode over TLS: the CAS and the HTTP receiver serve HTTPS with deployment-CA
certificates, and each trusted stage serves its admin endpoint with the TLS key the CAS
released to its attested measurement (the simulated backend: no hardware guarantee)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from meterseal.acquisition.http import HttpLink
from meterseal.bench.served import Served
from meterseal.deployment import issue_tls_identity
from meterseal.meter.simulator import run_fleet
from meterseal.runtime.tls import TlsIdentity, client_context
from meterseal.services.trusted_setup import provision_cas
from meterseal.storage import Store
from meterseal.trust.cas import Cas
from meterseal.trust.cas_store import CasStore
from meterseal.trust.vault import Vault
from meterseal.trust.worker import tls_secret
from tests.services_mode.conftest import make_fleet, wait_stored
from tests.tls import served_certificate

pytestmark = pytest.mark.services


def test_trusted_mode_over_tls_with_worker_keys_from_the_cas(
    nats_url: str, prefix: str, tmp_path: Path
) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", 4, 8)
    provision_cas(fleet.directory, fleet.store_url, worker_tls_hosts=["127.0.0.1"])
    now = dt.datetime.now(dt.UTC)
    for service in ("cas", "receiver"):
        issue_tls_identity(fleet.deployment, service, ["127.0.0.1"], passphrase=None, now=now)
    d = str(fleet.directory)
    cas = Served(
        ["cas", "serve", "-d", d, "--store", fleet.store_url, "--listen", "127.0.0.1:0",
         "--tls", "cas"],
        ready="cas",
    )  # fmt: skip
    served = None
    try:
        cas.wait_ready(120)
        cas_url = cas.endpoint("cas")
        assert cas_url.startswith("https://")
        served = Served(
            ["serve", "--mode", "trusted", "-d", d, "--store", fleet.store_url, "--cas", cas_url,
             "--nats", nats_url, "--prefix", prefix, "--tcp", "off", "--http", "127.0.0.1:0",
             "--http-tls", "receiver", "--worker-tls"],
            ready="supervisor",
        )  # fmt: skip
        served.wait_ready(180)
        verify = client_context(fleet.deployment.ca_cert)
        receiver_url = served.endpoint("http")
        assert receiver_url.startswith("https://")
        link = HttpLink(receiver_url, verify=verify)
        report = asyncio.run(run_fleet(fleet.wire, link, concurrency=4))
        stored = wait_stored(fleet)
        (billing_admin,) = served.admins("billing")
        assert billing_admin.startswith("https://")
        with httpx.Client(verify=verify, timeout=10) as client:
            assert client.get(billing_admin + "/readyz").json()["state"] == "ready"
        served_cert = served_certificate(billing_admin, verify)
    finally:
        code = served.stop() if served else None
        cas.stop()
    assert code == 0, "\n".join(served.lines[-30:]) if served else ""
    assert report.unacknowledged == 0
    assert stored == fleet.packets
    # The billing worker's HTTPS key is the one in the CAS, and no disk holds it.
    with Store.open(fleet.store_url) as store:
        cas_core = Cas(CasStore(store), Vault.from_deployment(fleet.directory), [])
        stored_secret = cas_core.state.latest_secret(tls_secret("billing"))
        assert stored_secret is not None
        pem = cas_core.vault.open(
            tls_secret("billing"), stored_secret.version, stored_secret.sealed
        )
    identity = TlsIdentity.from_pem(pem)
    assert served_cert == identity.certificate.public_bytes(serialization.Encoding.DER)
    assert not (fleet.directory / "tls" / "billing.key.pem").exists()
