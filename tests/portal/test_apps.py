"""The customer's apps page: consent per app through the router's operator channel.

The router is the dissemination's own (`RouterNode` over an in-process world, the tests'
in-memory network), reached through the same signed operator commands the CLI sends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.crypto.at_rest import write_secret_file
from meterseal.deployment import ANONYMIZATION_KEY
from meterseal.dissemination.customers import MeterPseudonym, customer_pseudonyms
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.node import RouterNode
from meterseal.portal.app import create_portal_app
from meterseal.portal.consent import RouterConsent, router_consent
from meterseal.storage import Store
from tests.accounts.people import PASSWORD
from tests.billing.test_api import AUDITOR
from tests.dissemination.conftest import World, make_world, reading
from tests.portal.conftest import Portal
from tests.portal.test_pages import csrf_of, signed_in

KEY = b"o" * 32
ANON = Anonymizer(b"n" * 32)


class Router:
    """A router world, its node, and whether it answers."""

    def __init__(self) -> None:
        self.world: World = make_world(seed=7)
        self.node = RouterNode(self.world.authority, self.world.router, KEY, os.urandom)
        self.up = True
        self.headend = self.world.publisher()
        self.world.join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, ""))
        self.world.join("myapp", Role.APP, (PrivacyLevel.HIGH, ""))
        self.world.join("otherapp", Role.APP, (PrivacyLevel.HIGH, ""))

    async def channel(self, command: bytes) -> bytes:
        if not self.up:
            raise ConnectionRefusedError("nats: no servers available for connection")
        answer, _outgoing = self.node.on_operator(command, now=time.time())
        return answer

    def receivers(self, pseudonym: bytes) -> set[str]:
        """Who a HIGH reading of `pseudonym` is delivered to now."""
        routed = self.world.network.publish("headend", [reading(self.headend, pseudonym, 0, 5)])
        return set(routed.deliveries)


@pytest.fixture
def router() -> Router:
    return Router()


@pytest.fixture
def client_of(portal: Portal, router: Router) -> Iterator[tuple[Portal, Router, Store]]:
    store = Store.open_read_only(portal.month.url)
    consent = RouterConsent(router.channel, KEY, ANON, store, "nats://router.test:4222")
    portal.app = create_portal_app(
        portal.bills, portal.people.authenticator, portal.accounts, None, consent
    )
    try:
        yield portal, router, store
    finally:
        store.close()


def _post(client: TestClient, **form: str) -> str:
    page = client.get("/portal/apps")
    response: httpx.Response = client.post(
        "/portal/apps", data={"csrf": csrf_of(page.text), **form}
    )
    assert response.status_code == 200, response.text
    return response.text


def test_consent_given_and_withdrawn_changes_what_the_app_receives(
    client_of: tuple[Portal, Router, Store],
) -> None:
    portal, router, store = client_of
    customer, account, _ = portal.customer(0)
    other_customer = portal.customer(1)[0]
    mine = customer_pseudonyms(store, ANON, customer)
    theirs = customer_pseudonyms(store, ANON, other_customer)
    assert mine
    client = signed_in(portal, account)
    page = client.get("/portal/apps")
    assert page.status_code == 200
    assert "Let myapp read my readings" in page.text
    assert "regional loads only" in page.text
    assert "agg</strong> (aggregator)" in page.text
    assert router.receivers(mine[0].pseudonym) == {"agg"}

    # Whatever the form says about whose consent, it is the signed-in customer's.
    done = _post(client, app="myapp", action="grant", customer=other_customer)
    assert "myapp now receives your raw readings" in done
    assert "Withdraw consent from myapp" in done
    assert "Let otherapp read my readings" in done
    for meter in mine:
        assert router.receivers(meter.pseudonym) == {"agg", "myapp"}
    for meter in theirs:
        assert router.receivers(meter.pseudonym) == {"agg"}  # not the other customer's

    done = _post(client, app="myapp", action="revoke")
    assert "myapp no longer receives your readings" in done
    assert router.receivers(mine[0].pseudonym) == {"agg"}

    # Both changes are in the customer's access log, which their page shows; no other's.
    changes = [
        (e.subject, e.route, e.object_id)
        for e in portal.accounts.entries(customer)
        if e.route == "POST /portal/apps"
    ]
    assert changes == [
        (account, "POST /portal/apps", "consent given to myapp"),
        (account, "POST /portal/apps", "consent withdrawn from myapp"),
    ]
    assert not [e for e in portal.accounts.entries(other_customer) if "consent" in e.object_id]
    log = client.get("/portal/access").text
    assert log.index("consent given to myapp") < log.index("consent withdrawn from myapp")


def test_csrf_unknown_apps_and_an_unreachable_router(
    client_of: tuple[Portal, Router, Store],
) -> None:
    portal, router, store = client_of
    customer, account, _ = portal.customer(0)
    client = signed_in(portal, account)
    forged = client.post("/portal/apps", data={"app": "myapp", "action": "grant", "csrf": "x"})
    assert forged.status_code == 403
    csrf = csrf_of(client.get("/portal/apps").text)
    ghost = client.post("/portal/apps", data={"app": "agg", "action": "grant", "csrf": csrf})
    assert ghost.status_code == 404  # only apps take consent; an aggregator is not one
    assert (
        router.world.authority.consent.get(
            customer_pseudonyms(store, ANON, customer)[0].pseudonym, set()
        )
        == set()
    )
    router.up = False
    down = client.get("/portal/apps")
    assert down.status_code == 503
    assert "nats://router.test:4222 did not answer" in down.text
    refused = client.post("/portal/apps", data={"app": "myapp", "action": "grant", "csrf": csrf})
    assert refused.status_code == 503
    assert "Nothing changed" in refused.text
    assert not [e for e in portal.accounts.entries(customer) if "consent" in e.object_id]


def test_the_consent_post_needs_the_session_its_token_and_the_customer_role(
    client_of: tuple[Portal, Router, Store],
) -> None:
    portal, router, store = client_of
    customer, account, _ = portal.customer(0)
    pseudonym = customer_pseudonyms(store, ANON, customer)[0].pseudonym
    client = signed_in(portal, account)
    csrf = csrf_of(client.get("/portal/apps").text)
    grant = {"app": "myapp", "action": "grant"}
    for token in ({}, {"csrf": ""}, {"csrf": csrf[:-1]}):
        refused = client.post("/portal/apps", data={**grant, **token})
        assert refused.status_code == 403
        assert "the form expired; reload it" in refused.text
    # The token alone (its cookie, no session): anonymous, sent to sign in.
    stranger = TestClient(portal.app, follow_redirects=False)
    stranger.cookies.set("ms_csrf", csrf)
    assert stranger.post("/portal/apps", data={**grant, "csrf": csrf}).status_code == 303
    assert router.world.authority.consent.get(pseudonym, set()) == set()
    # Signed-in staff with a matching token: the route is the customer's.
    staff = TestClient(portal.app, follow_redirects=False)
    login_csrf = csrf_of(staff.get("/portal/login").text)
    staff.post(
        "/portal/login", data={"username": AUDITOR, "password": PASSWORD, "csrf": login_csrf}
    )
    staff_csrf = staff.cookies["ms_csrf"]
    assert staff.post("/portal/apps", data={**grant, "csrf": staff_csrf}).status_code == 403
    assert router.world.authority.consent.get(pseudonym, set()) == set()
    assert "myapp now receives" in _post(client, **grant)
    assert router.world.authority.consent.get(pseudonym, set()) != set()


def test_without_a_router_the_page_says_so(portal: Portal) -> None:
    client = signed_in(portal, portal.customer(0)[1])
    page = client.get("/portal/apps")
    assert page.status_code == 503
    assert "not connected to the router" in page.text
    anonymous = TestClient(portal.app, follow_redirects=False).get("/portal/apps")
    assert anonymous.status_code == 303


def test_a_portal_on_nats_says_when_the_router_is_unreachable(
    portal: Portal, tmp_path: Path
) -> None:
    """`bills serve --router-nats URL --router-keys DIR`: the keys as the router keeps them."""
    keys, deployment = tmp_path / "router", tmp_path / "deployment"
    keys.mkdir()
    deployment.mkdir()
    write_secret_file(keys / "operator.key", KEY, None)
    write_secret_file(deployment / ANONYMIZATION_KEY, b"n" * 32, None)
    url = "nats://127.0.0.1:9"  # the discard port: nothing speaks NATS there
    with Store.open_read_only(portal.month.url) as store:
        consent = router_consent(url, keys, "ms.test", deployment, store, None)
        portal.app = create_portal_app(
            portal.bills, portal.people.authenticator, portal.accounts, None, consent
        )
        customer, account, _ = portal.customer(0)
        assert consent.meters(customer) == customer_pseudonyms(store, ANON, customer)
        page = signed_in(portal, account).get("/portal/apps")
    assert page.status_code == 503
    assert "the router at nats://127.0.0.1:9 (ms.test) did not answer" in page.text


class _TwoMeters(RouterConsent):
    """The customer's meter and a second one (not in the store: the router does not mind)."""

    def meters(self, customer_id: str) -> list[MeterPseudonym]:
        first = super().meters(customer_id)[0]
        return [first, MeterPseudonym(customer_id, "SECOND-METER", b"\x09" * 16)]


def test_a_router_lost_midway_says_which_meters_changed_and_logs_them(
    portal: Portal, router: Router
) -> None:
    customer, account, _ = portal.customer(0)
    sent = 0

    async def channel(command: bytes) -> bytes:
        nonlocal sent
        sent += 1
        if sent > 2:  # the consents view, then the first meter's grant: then it is gone
            raise ConnectionResetError("nats: connection closed")
        return await router.channel(command)

    with Store.open_read_only(portal.month.url) as store:
        consent = _TwoMeters(channel, KEY, ANON, store, "nats://router.test:4222")
        portal.app = create_portal_app(
            portal.bills, portal.people.authenticator, portal.accounts, None, consent
        )
        first = consent.meters(customer)[0]
        client = signed_in(portal, account)
        page = client.get("/portal/apps")
        sent = 0
        form = {"app": "myapp", "action": "grant", "csrf": csrf_of(page.text)}
        answer = client.post("/portal/apps", data=form)
    assert answer.status_code == 503
    assert f"changed for meter(s) {first.meter_id} only: choose again to finish" in answer.text
    assert "Not finished" in answer.text
    assert router.world.authority.consent.get(first.pseudonym) == {"myapp"}
    assert not router.world.authority.consent.get(b"\x09" * 16)
    (entry,) = [e for e in portal.accounts.entries(customer) if "consent" in e.object_id]
    assert entry.object_id == f"consent given to myapp (meters {first.meter_id} only)"
