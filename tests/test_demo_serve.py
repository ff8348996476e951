"""`meterseal demo --serve`: the portal on the demo's data, an account a role, Ctrl-C stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx

from tests.portal.test_pages import csrf_of

_LOGIN = re.compile(r"^\s+login (\w+)\s+(\S+)\s+password (\S+)")


def _sign_in(url: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    page = client.get("/portal/login")
    form = {"username": username, "password": password, "csrf": csrf_of(page.text)}
    response = client.post("/portal/login", data=form)
    assert response.status_code == 303, response.text
    return client


def test_demo_serve_leaves_the_portal_running_with_one_account_per_role() -> None:
    command = [sys.executable, "-m", "meterseal", "demo", "--meters", "8", "--days", "1"]
    command += ["--serve", "--listen", "127.0.0.1:0"]
    env = {**os.environ, "COLUMNS": "200"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            logins: dict[str, tuple[str, str]] = {}
            url, router = "", ""
            for line in process.stdout:
                if match := _LOGIN.match(line):
                    logins[match.group(1)] = (match.group(2), match.group(3))
                if line.startswith("the dissemination router runs in this process"):
                    router = line
                if line.startswith("listening bills "):
                    url = line.split()[-1]
                    break
            assert url.startswith("http://127.0.0.1:"), logins
            assert set(logins) == {"customer", "auditor", "operator", "administrator"}
            passwords = [p for _, p in logins.values()]
            assert len(set(passwords)) == 4  # drawn, not fixed
            assert all(len(p) >= 16 for p in passwords)
            customer = _sign_in(url, *logins["customer"])
            bills = customer.get("/portal/bills")
            assert bills.status_code == 200
            link = re.search(r'href="(/portal/bills/[^"]+)"', bills.text)
            assert link, bills.text
            bill = customer.get(link.group(1))
            assert bill.status_code == 200
            assert "Charges" in bill.text
            # The router runs too: the customer gives demo-app consent, then withdraws it.
            assert "SIMULATED attestation" in router
            assert "demo-app" in router
            apps = customer.get("/portal/apps")
            assert apps.status_code == 200, apps.text
            assert "Let demo-app read my readings" in apps.text
            for action, said in (("grant", "now receives"), ("revoke", "no longer receives")):
                form = {"app": "demo-app", "action": action, "csrf": csrf_of(apps.text)}
                apps = customer.post("/portal/apps", data=form)
                assert apps.status_code == 200, apps.text
                assert f"demo-app {said} your" in apps.text
            log = customer.get("/portal/access").text
            customer.close()
            assert log.index("consent given to demo-app") < log.index("consent withdrawn from")
            # Each staff account lands on its role's pages, on the demo's data.
            homes = {
                "auditor": ("/portal/audit", "clean, countersigned"),
                "operator": ("/portal/fleet/load", "<svg"),
                "administrator": ("/portal/admin/meters", " meters, by id."),
            }
            for role, (path, shown) in homes.items():
                staff = _sign_in(url, *logins[role])
                page = staff.get(path)
                staff.close()
                assert page.status_code == 200, (role, page.text)
                assert shown in page.text, (role, page.text)
            with httpx.Client(base_url=url, timeout=10) as stranger:
                page = stranger.get("/portal/login")
                form = {"username": logins["customer"][0], "password": "guessed-password"}
                refused = stranger.post("/portal/login", data={**form, "csrf": csrf_of(page.text)})
                assert refused.status_code == 401
        finally:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
