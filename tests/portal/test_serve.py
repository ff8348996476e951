"""`meterseal bills serve` serves the portal, as docs/portal.md says: sign in, see the bills,
and the deployment's public keys at /v1/keys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives import serialization

from meterseal.accounts.token_key import ensure_token_key
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.portal.app import CSP
from tests.accounts.people import PASSWORD
from tests.portal.conftest import Portal
from tests.portal.test_pages import csrf_of
from tests.portal.test_services_health import services  # noqa: F401 - fixture


def _pem(path: Path, key: object) -> None:
    assert hasattr(key, "public_bytes")
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def test_bills_serve_serves_the_portal(portal: Portal, tmp_path: Path) -> None:
    deployment = tmp_path / "deployment"
    deployment.mkdir(mode=0o700)
    ensure_token_key(deployment, None)  # what `keys init` makes; a server never does
    billing, authority = (
        portal.month.billing_key.public_key(),
        portal.month.authority_key.public_key(),
    )
    _pem(deployment / "billing.pub.pem", billing)
    _pem(deployment / "metrology.pub.pem", authority)
    command = [sys.executable, "-m", "meterseal", "bills", "serve", "--store", portal.month.url]
    command += ["--deployment", str(deployment), "--listen", "127.0.0.1:0", "--admin", "off"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("listening bills http://127.0.0.1:"), line
            url = line.split()[-1]
            with httpx.Client(base_url=url, timeout=10) as client:
                page = client.get("/portal/login")
                assert page.status_code == 200
                assert page.headers["content-security-policy"] == CSP
                _, account, bill_id = portal.customer(0)
                form = {"username": account, "password": PASSWORD, "csrf": csrf_of(page.text)}
                assert client.post("/portal/login", data=form).status_code == 303
                bills = client.get("/portal/bills")
                assert bills.status_code == 200
                assert quote(bill_id, safe="") in bills.text
                keys = client.get("/v1/keys").json()["keys"]
            expected = [kid_of(public_bytes(k)).hex() for k in (billing, authority)]
            assert [k["kid"] for k in keys] == expected
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_the_services_page_asks_what_meterseal_toml_names(
    portal: Portal,
    tmp_path: Path,
    services: dict[str, str],  # noqa: F811
) -> None:
    """docs/portal.md's [portal] health: the operator's Services page asks those endpoints."""
    deployment = tmp_path / "deployment"
    deployment.mkdir(mode=0o700)
    ensure_token_key(deployment, None)
    named = ", ".join(f"{name}={url}" for name, url in services.items())
    config = tmp_path / "meterseal.toml"
    config.write_text(f'[portal]\nhealth = "{named}"\n')
    command = [sys.executable, "-m", "meterseal", "--config", str(config), "bills", "serve"]
    command += ["--store", portal.month.url, "--deployment", str(deployment)]
    command += ["--listen", "127.0.0.1:0", "--admin", "off"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("listening bills http://127.0.0.1:"), line
            with httpx.Client(base_url=line.split()[-1], timeout=20) as client:
                page = client.get("/portal/login")
                form = {"username": "operator", "password": PASSWORD, "csrf": csrf_of(page.text)}
                assert client.post("/portal/login", data=form).status_code == 303
                shown = client.get("/portal/fleet/services")
            assert shown.status_code == 200, shown.text
            assert "2 of 5 services ready" in shown.text
            assert services["cas"] in shown.text
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
