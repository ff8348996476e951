"""The customer's pages: sign-in, roles, CSRF, headers, and customers kept apart."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from meterseal.portal.app import CSP, CSRF_COOKIE, SESSION_COOKIE
from meterseal.runtime import body_cap
from meterseal.runtime.auth import check_access, route_rules
from tests.accounts.people import PASSWORD
from tests.billing.test_api import AUDITOR
from tests.portal.conftest import Portal

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's form carries."""
    match = _CSRF.search(html)
    assert match, html
    return match.group(1)


def signed_in(portal: Portal, account: str, base_url: str = "http://testserver") -> TestClient:
    """A browser-like client signed in through the form as `account`."""
    client = TestClient(portal.app, base_url=base_url, follow_redirects=False)
    page = client.get("/portal/login")
    form = {"username": account, "password": PASSWORD, "csrf": csrf_of(page.text)}
    response = client.post("/portal/login", data=form)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/portal/bills"
    return client


def test_every_route_declares_a_rule(portal: Portal) -> None:
    check_access(portal.app)
    rules = route_rules(portal.app)
    assert rules["GET /portal/bills"] == ["role:customer"]
    assert rules["GET /portal/bills/{bill_id:path}"] == ["role:customer"]
    assert rules["GET /portal/access"] == ["role:customer"]
    assert rules["POST /portal/login"] == ["public"]
    assert rules["GET /v1/keys"] == ["public"]


def test_anonymous_is_sent_to_sign_in_and_pages_carry_a_strict_csp(portal: Portal) -> None:
    client = TestClient(portal.app, follow_redirects=False)
    for path in ("/portal/bills", "/portal/access", f"/portal/bills/{portal.customer(0)[2]}"):
        response = client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/portal/login")
    page = client.get("/portal/login")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text
    assert "style=" not in page.text
    assert '<label for="username">' in page.text
    assert '<label for="password">' in page.text
    # The API keeps its JSON refusals.
    assert client.get("/v1/auth/whoami").json() == {"detail": "authentication required"}


def test_sign_in_sets_a_strict_session_cookie_and_shows_the_bills(portal: Portal) -> None:
    customer, account, bill_id = portal.customer(0)
    client = TestClient(portal.app, follow_redirects=False)
    form = {
        "username": account,
        "password": PASSWORD,
        "csrf": csrf_of(client.get("/portal/login").text),
    }
    response = client.post("/portal/login", data=form)
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age=900" in cookie
    assert "Secure" not in cookie  # plain HTTP here; TLS below
    page = client.get("/portal/bills")
    assert page.status_code == 200
    assert f"/portal/bills/{quote(bill_id, safe='')}" in page.text
    bill = portal.month.bills.bill(bill_id)
    assert bill is not None
    assert f"{bill.total} {bill.currency}" in page.text
    assert "<td>in force</td>" in page.text
    one = client.get(f"/portal/bills/{quote(bill_id, safe='')}")
    assert one.status_code == 200
    assert 'src="/portal/static/verify.js"' in one.text
    assert "<svg" in one.text
    assert one.text.count(">Check this reading<") == 96  # the day's quarter-hours of one meter
    # The session acts on the JSON API too (GET only), as the browser's verification needs.
    assert client.get(f"/v1/bills/{bill_id}").status_code == 200
    assert client.get("/v1/auth/whoami").json()["customer_id"] == customer


def test_over_tls_the_cookies_are_secure(portal: Portal) -> None:
    client = TestClient(portal.app, base_url="https://testserver", follow_redirects=False)
    page = client.get("/portal/login")
    assert "Secure" in page.headers["set-cookie"]
    form = {"username": portal.customer(0)[1], "password": PASSWORD, "csrf": csrf_of(page.text)}
    response = client.post("/portal/login", data=form)
    assert all("Secure" in c for c in response.headers.get_list("set-cookie"))


def test_a_form_without_its_csrf_token_is_refused(portal: Portal) -> None:
    client = TestClient(portal.app, follow_redirects=False)
    token = csrf_of(client.get("/portal/login").text)
    account = portal.customer(0)[1]
    for sent in ("", token[:-1] + ("A" if token[-1] != "A" else "B")):
        response = client.post(
            "/portal/login", data={"username": account, "password": PASSWORD, "csrf": sent}
        )
        assert response.status_code == 403
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    # A cross-site form has the token but not the cookie (SameSite=Strict keeps it home).
    fresh = TestClient(portal.app, follow_redirects=False)
    response = fresh.post(
        "/portal/login", data={"username": account, "password": PASSWORD, "csrf": token}
    )
    assert response.status_code == 403
    # Sign-out needs the token too.
    client = signed_in(portal, account)
    assert client.post("/portal/logout", data={"csrf": "nope"}).status_code == 403
    assert client.get("/portal/bills").status_code == 200
    out = client.post("/portal/logout", data={"csrf": client.cookies[CSRF_COOKIE]})
    assert out.status_code == 303
    client.cookies.delete(SESSION_COOKIE)  # what the browser does with the expired cookie
    assert client.get("/portal/bills").status_code == 303


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


def _sign_in_form(portal: Portal, receive: Receive, session: bool) -> int:
    """The status of a chunked sign-in form whose body `receive` gives (with a session cookie:
    the authenticator reads the form first, for its CSRF token)."""
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"testserver"), (b"transfer-encoding", b"chunked")]
    headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    if session:
        headers.append((b"cookie", f"{SESSION_COOKIE}=x; {CSRF_COOKIE}=y".encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/portal/login", "raw_path": b"/portal/login",
        "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
    }  # fmt: skip
    asyncio.run(asyncio.wait_for(portal.app(scope, receive, send), 30))
    status = sent[0]["status"]
    assert isinstance(status, int)
    return status


@pytest.mark.parametrize("session", [False, True], ids=["handler", "authenticator"])
def test_a_chunked_form_is_refused_once_past_its_limit_not_read_to_its_end(
    portal: Portal, session: bool
) -> None:
    # Without a Content-Length the form was read whole before its size was looked at: an
    # anonymous sender could make the portal hold any size of sign-in form.
    received = 0

    async def receive() -> MutableMapping[str, Any]:
        nonlocal received
        received += 1
        assert received <= 64, "read on past the form's limit (4 KiB)"
        return {"type": "http.request", "body": b"a" * 1024, "more_body": True}

    assert _sign_in_form(portal, receive, session) == 413


@pytest.mark.parametrize("session", [False, True], ids=["handler", "authenticator"])
def test_a_form_that_stops_short_is_let_go(
    portal: Portal, session: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A form whose sender stopped sending was waited for as long as the connection lived.
    monkeypatch.setattr(body_cap, "BODY_GRACE", 0.2)
    pieces = [{"type": "http.request", "body": b"username=a", "more_body": True}]

    async def receive() -> MutableMapping[str, Any]:
        if pieces:
            return pieces.pop()
        await asyncio.Event().wait()  # nothing more comes
        raise AssertionError("unreachable")

    assert _sign_in_form(portal, receive, session) == 408


def test_signing_out_revokes_the_session_on_the_server(portal: Portal) -> None:
    account = portal.customer(0)[1]
    client, other = signed_in(portal, account), signed_in(portal, account)
    cookie = client.cookies[SESSION_COOKIE]
    assert client.get("/portal/bills").status_code == 200
    out = client.post("/portal/logout", data={"csrf": client.cookies[CSRF_COOKIE]})
    assert out.status_code == 303
    # A copy of the cookie (kept by an attacker, or a browser that did not drop it) is no
    # session any more, though the token has not expired: the clock has not moved.
    copy = TestClient(portal.app, follow_redirects=False)
    copy.cookies.set(SESSION_COOKIE, cookie)
    assert copy.get("/portal/bills").headers["location"] == "/portal/login"
    bearer = copy.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {cookie}"})
    assert bearer.status_code == 401
    # Another session of the same account (another browser) goes on.
    assert other.get("/portal/bills").status_code == 200
    assert portal.people.authenticator.sign_out(cookie) is False  # already revoked


def test_the_revocation_list_forgets_tokens_once_they_expire(portal: Portal) -> None:
    accounts, now = portal.accounts, portal.people.clock()
    accounts.revoke_token("old", "someone", now + 10, now)
    accounts.revoke_token("new", "someone", now + 900, now)
    accounts.revoke_token("new", "someone", now + 900, now)  # twice: one row
    assert accounts.token_revoked("old")
    assert accounts.token_revoked("new")
    accounts.revoke_token("newer", "someone", now + 1800, now + 10)
    assert not accounts.token_revoked("old")  # it expired: no token of that id works anyway
    assert accounts.token_revoked("new")
    assert accounts.token_revoked("newer")


def test_the_session_cookie_on_a_post_needs_the_csrf_token(portal: Portal) -> None:
    client = signed_in(portal, portal.customer(0)[1])
    assert client.get("/v1/auth/whoami").status_code == 200
    # The cookie on a POST without the form's token is refused before any handler runs,
    # a public route's too (a JSON body carries no form token).
    refused = client.post("/v1/auth/token", json={})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "the form expired; reload it"
    anonymous = TestClient(portal.app).post("/v1/auth/token", json={})
    assert anonymous.status_code == 422


def test_wrong_password_and_staff(portal: Portal) -> None:
    client = TestClient(portal.app, follow_redirects=False)
    token = csrf_of(client.get("/portal/login").text)
    bad = client.post(
        "/portal/login", data={"username": "customer0", "password": "x", "csrf": token}
    )
    assert bad.status_code == 401
    assert "wrong account name or password" in bad.text
    staff = client.post(
        "/portal/login", data={"username": AUDITOR, "password": PASSWORD, "csrf": token}
    )
    assert (staff.status_code, staff.headers["location"]) == (303, "/portal/audit")
    assert client.get("/portal/bills").status_code == 403  # tests/portal/test_staff.py: more


def test_a_customer_never_reaches_another_s_bill(portal: Portal) -> None:
    _, account, _ = portal.customer(0)
    other, _, theirs = portal.customer(1)
    client = signed_in(portal, account)
    unknown = theirs[:-1] + ("Y" if theirs[-1] == "Z" else "Z")
    refused = client.get(f"/portal/bills/{quote(theirs, safe='')}")
    nothing = client.get(f"/portal/bills/{quote(unknown, safe='')}")
    assert refused.status_code == nothing.status_code == 404
    assert refused.text.replace(theirs, unknown) == nothing.text.replace(
        csrf_of(nothing.text), csrf_of(refused.text)
    )
    # Unencoded, with a day, through the list: never theirs.
    assert client.get(f"/portal/bills/{theirs}?day=2026-10-30").status_code == 404
    assert theirs not in client.get("/portal/bills").text
    assert portal.accounts.entries(customer_id=other) == []
    # Its proofs and inclusion through the API the page's script uses: 404 too.
    assert client.get(f"/v1/bills/{quote(theirs, safe='')}").status_code == 404
    assert client.get(f"/v1/bill-log/inclusion/{quote(theirs, safe='')}").status_code == 404


def test_the_access_log_page_shows_who_read_only_my_data(portal: Portal) -> None:
    _customer, account, bill_id = portal.customer(0)
    client = signed_in(portal, account)
    client.get(f"/portal/bills/{quote(bill_id, safe='')}")
    auditor = TestClient(portal.app)
    assert (
        auditor.get(f"/v1/bills/{bill_id}", headers=portal.people.headers(AUDITOR)).status_code
        == 200
    )
    page = client.get("/portal/access").text
    assert AUDITOR in page
    assert "/v1/bills/{bill_id:path}" in page
    assert bill_id in page
    assert portal.customer(1)[2] not in page


def test_keys_endpoint_publishes_the_billing_and_authority_keys(portal: Portal) -> None:
    keys = TestClient(portal.app).get("/v1/keys").json()["keys"]
    assert [(k["role"], k["alg"]) for k in keys] == [("billing", "ES256"), ("authority", "ES256")]
    assert all(len(bytes.fromhex(k["kid"])) == 8 for k in keys)


def test_static_files_are_a_fixed_set(portal: Portal) -> None:
    client = TestClient(portal.app)
    js = client.get("/portal/static/verify.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert client.get("/portal/static/..%2Fapp.py").status_code == 404
    assert client.get("/portal/static/app.py").status_code == 404


@pytest.mark.parametrize("day", ["2026-10-30", "nonsense", None])
def test_a_bill_page_shows_a_day_of_readings(portal: Portal, day: str | None) -> None:
    _, account, bill_id = portal.customer(0)
    client = signed_in(portal, account)
    query = f"?day={day}" if day else ""
    page = client.get(f"/portal/bills/{quote(bill_id, safe='')}{query}")
    assert page.status_code == 200
    assert "Readings of 2026-10-30" in page.text
