"""`meterseal certs issue` and `cas secrets issue-tls`: service TLS identities from the CA."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from meterseal.bench.served import Served
from meterseal.crypto import at_rest
from meterseal.crypto.certs import service_of
from meterseal.deployment import load_tls_identity
from meterseal.errors import KeyFileError
from meterseal.runtime.tls import TlsIdentity, client_context, server_context
from meterseal.storage import Store
from meterseal.trust.cas import Cas
from meterseal.trust.cas_store import CasStore
from meterseal.trust.vault import Vault
from tests.command_line import invoke

PASSPHRASE = "tls test passphrase"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs") / "deployment"
    result = invoke(["keys", "init", str(directory)], env={"MS_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.output
    return directory


def test_certs_issue_writes_an_encrypted_key_and_a_server_and_client_certificate(
    deployment: Path,
) -> None:
    args = ["certs", "issue", "bills", "--host", "127.0.0.1", "--host", "bills.example"]
    result = invoke([*args, "-d", str(deployment)], env={"MS_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.output
    key_path = deployment / "tls" / "bills.key.pem"
    assert at_rest.is_encrypted(key_path.read_bytes())
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert key_path.parent.stat().st_mode & 0o777 == 0o700
    with pytest.raises(KeyFileError, match="MS_PASSPHRASE"):
        load_tls_identity(deployment, "bills", None)
    identity = load_tls_identity(deployment, "bills", PASSPHRASE.encode())
    cert = identity.certificate
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["bills.example"]
    assert service_of(cert) == "bills"
    ca = x509.load_pem_x509_certificate((deployment / "ca.cert.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    server_context(identity, ca, require_client=True)  # loads: the key matches the certificate


def test_a_bad_service_name_is_refused(deployment: Path) -> None:
    result = invoke(
        ["certs", "issue", "../x", "-d", str(deployment)], env={"MS_PASSPHRASE": PASSPHRASE}
    )
    assert result.exit_code == 2
    assert "service names are" in result.output


def test_cas_secrets_issue_tls_puts_the_key_in_the_cas_only(
    deployment: Path, tmp_path: Path
) -> None:
    env = {"MS_PASSPHRASE": PASSPHRASE}
    store = f"sqlite:///{tmp_path / 'cas.db'}"
    assert invoke(["cas", "init", "-d", str(deployment)], env=env).exit_code == 0
    args = ["cas", "secrets", "issue-tls", "--stage", "billing", "--host", "127.0.0.1"]
    result = invoke([*args, "--store", store, "-d", str(deployment)], env=env)
    assert result.exit_code == 0, result.output
    assert "tls/billing: v1" in result.output
    assert not (deployment / "tls" / "billing.key.pem").exists()
    with Store.open(store) as db:
        cas = Cas(CasStore(db), Vault.from_deployment(deployment, PASSPHRASE.encode()), [])
        stored = cas.state.latest_secret("tls/billing")
        assert stored is not None
        identity = TlsIdentity.from_pem(cas.vault.open("tls/billing", 1, stored.sealed))
    assert service_of(identity.certificate) == "billing"
    args = ["cas", "policy", "add", "--stage", "billing", "--secret", "tls/billing"]
    result = invoke([*args, "--store", store, "-d", str(deployment)], env=env)
    assert result.exit_code == 0, result.output
    assert "(billing) to receive tls/billing" in result.output


def test_bills_serve_over_mutual_tls(deployment: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MS_PASSPHRASE": PASSPHRASE}
    d = str(deployment)
    for name, hosts in (("bills", ["--host", "127.0.0.1"]), ("auditor", [])):
        result = invoke(["certs", "issue", name, *hosts, "-d", d], env=env)
        assert result.exit_code == 0, result.output
    store = f"sqlite:///{tmp_path / 'bills.db'}"
    Store.open(store).close()  # created and migrated: the API opens it read-only
    served = Served(
        ["bills", "serve", "--store", store, "--listen", "127.0.0.1:0", "-d", d,
         "--tls", "bills", "--client-certs", "required"],
        ready="bills",
        env=env,
    )  # fmt: skip
    try:
        served.wait_ready(60)
        url = served.endpoint("bills")
        ca = x509.load_pem_x509_certificate((deployment / "ca.cert.pem").read_bytes())
        auditor = load_tls_identity(deployment, "auditor", PASSPHRASE.encode())
        with httpx.Client(verify=client_context(ca, auditor), timeout=10) as client:
            assert client.get(url + "/healthz").json() == {"status": "ok"}
        with (
            httpx.Client(verify=client_context(ca), timeout=10) as client,
            pytest.raises(httpx.TransportError),
        ):
            client.get(url + "/healthz")
    finally:
        served.stop()
    assert url.startswith("https://127.0.0.1:")
