"""`meterseal bills serve --cas URL` gives the administrator's pages their tools, as
docs/portal.md says: a meter provisioned with the deployment's CA, the CAS's secrets listed and
one rotated with the administrator's own session (the CAS shares the store's accounts and the
deployment's token key), each change in the change log."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from cryptography import x509

from meterseal.accounts.authn import AccountAuthenticator
from meterseal.accounts.credentials import TokenSigner
from meterseal.accounts.token_key import ensure_token_key, token_key
from meterseal.deployment import init_deployment
from meterseal.runtime.http import ThreadedServer
from meterseal.storage.accounts import AccountStore
from meterseal.storage.admin_changes import ChangeStore
from meterseal.trust.api import create_cas_app
from meterseal.trust.state import MemoryCasState
from tests.accounts.people import PASSWORD
from tests.billing.test_api import ADMINISTRATOR
from tests.portal.conftest import Portal
from tests.portal.test_admin_tools import SECRET, csr_pem
from tests.portal.test_pages import csrf_of
from tests.trust.conftest import make_world, platform


def test_bills_serve_gives_the_administrator_the_deployments_tools(
    portal: Portal, tmp_path: Path
) -> None:
    deployment = tmp_path / "deployment"
    init_deployment(deployment, now=dt.datetime.now(dt.UTC))
    ensure_token_key(deployment, None)
    world = make_world(platform(tmp_path / "cas"), MemoryCasState())
    world.cas.put_secret("db-password", SECRET)
    signer = TokenSigner(token_key(deployment, None))
    cas_people = AccountAuthenticator(AccountStore(portal.month.store), signer)
    with ThreadedServer(create_cas_app(world.cas, cas_people)) as cas_url:
        command = [sys.executable, "-m", "meterseal", "bills", "serve"]
        command += ["--store", portal.month.url, "--deployment", str(deployment)]
        command += ["--listen", "127.0.0.1:0", "--admin", "off", "--cas", cas_url]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ) as served:
            try:
                assert served.stdout is not None
                line = served.stdout.readline()
                assert line.startswith("listening bills http://127.0.0.1:"), line
                with httpx.Client(base_url=line.split()[-1], timeout=20) as client:
                    page = client.get("/portal/login")
                    form = {"username": ADMINISTRATOR, "password": PASSWORD}
                    signed = client.post("/portal/login", data=form | {"csrf": csrf_of(page.text)})
                    assert signed.status_code == 303
                    csrf = client.cookies["ms_csrf"]
                    made = client.post(
                        "/portal/admin/meters/new",
                        data={
                            "csrf": csrf,
                            "how": "csr",
                            "pem": csr_pem("SERVE-1"),
                            "customer": "C-1",
                            "region": "R01",
                        },
                    )
                    assert "meter SERVE-1 provisioned" in made.text, made.text
                    listed = client.get("/portal/admin/cas")
                    assert "db-password" in listed.text, listed.text
                    rotated = client.post(
                        "/portal/admin/cas/secrets/db-password/rotate",
                        data={"csrf": csrf, "secret": "db-password"},
                    )
                    assert "rotated to version 2" in rotated.text, rotated.text
            finally:
                served.send_signal(signal.SIGTERM)
            assert served.wait(timeout=20) == 0
    written = deployment / "meters" / "SERVE-1.cert.pem"
    ca = x509.load_pem_x509_certificate((deployment / "ca.cert.pem").read_bytes())
    assert x509.load_pem_x509_certificate(written.read_bytes()).issuer == ca.subject
    actions = [
        (c.request.action, c.request.object_id) for c in ChangeStore(portal.month.store).changes()
    ]
    assert actions == [("meter.provision", "SERVE-1"), ("cas.secret.rotate", "db-password")]
