"""The administrator's meter revocation from the portal: confirm, revoke, logged, staff only."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from meterseal.portal.admin import REVOKE_ROUTE
from meterseal.portal.app import CSRF_COOKIE, PublishedKeys, create_portal_app
from meterseal.runtime.auth import route_rules
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from meterseal.storage.fleet import FleetStore
from tests.billing.test_api import ADMINISTRATOR, OPERATOR
from tests.conftest import NOW
from tests.portal.conftest import Portal
from tests.portal.test_pages import csrf_of
from tests.portal.test_staff import sign_in


def _app(portal: Portal, store: Store, writable: bool) -> Portal:
    month = portal.month
    keys = PublishedKeys(month.billing_key.public_key(), month.authority_key.public_key())
    app = create_portal_app(
        BillStore(store),
        portal.people.authenticator,
        portal.accounts,
        keys,
        fleet=FleetStore(store),
        clock=NOW.timestamp,
        meters=month.store if writable else None,
    )
    return Portal(
        month, app, portal.bills, portal.billed, portal.people, portal.customers, portal.accounts
    )


@pytest.fixture
def store(portal: Portal) -> Iterator[Store]:
    read_only = Store.open_read_only(portal.month.url)
    try:
        yield read_only
    finally:
        read_only.close()


def _revoked(portal: Portal) -> dict[str, object]:
    return {r.meter_id: r.revoked_at for r in portal.month.store.meter_rows()}


def _changes(portal: Portal) -> list[tuple[str, str, str, str]]:
    return [
        (e.subject, e.route, e.customer_id, e.object_id)
        for e in portal.accounts.entries()
        if e.route == REVOKE_ROUTE
    ]


def _path(meter: str) -> str:
    return f"/portal/admin/meters/{quote(meter, safe='')}/revoke"


def test_an_administrator_confirms_then_revokes_and_it_is_logged(
    portal: Portal, store: Store
) -> None:
    portal = _app(portal, store, writable=True)
    rules = route_rules(portal.app)
    assert rules[f"GET {REVOKE_ROUTE}"] == rules[f"POST {REVOKE_ROUTE}"] == ["role:administrator"]
    meter = sorted(_revoked(portal))[0]
    customer = next(r.customer_id for r in portal.month.store.meter_rows() if r.meter_id == meter)
    client, _ = sign_in(portal, ADMINISTRATOR)
    assert _path(meter) in client.get("/portal/admin/meters").text
    confirm = client.get(_path(meter))
    assert confirm.status_code == 200
    assert f"Revoke meter {meter}" in confirm.text
    assert _revoked(portal)[meter] is None  # the confirmation page changes nothing
    csrf = csrf_of(confirm.text)
    # Without the form's token, or naming another meter: refused, nothing changes.
    assert client.post(_path(meter), data={"meter": meter}).status_code == 403
    other = client.post(_path(meter), data={"meter": "other", "csrf": csrf})
    assert other.status_code == 400
    assert _revoked(portal)[meter] is None
    assert _changes(portal) == []
    done = client.post(_path(meter), data={"meter": meter, "csrf": csrf})
    assert done.status_code == 200, done.text
    assert f"meter {meter} revoked" in done.text
    assert _revoked(portal)[meter] == NOW
    assert [m for m, at in _revoked(portal).items() if at is not None] == [meter]
    assert _changes(portal) == [(ADMINISTRATOR, REVOKE_ROUTE, customer, meter)]
    # Once revoked: no link, the confirmation says so, a second POST changes and logs nothing.
    assert _path(meter) not in client.get("/portal/admin/meters").text
    assert "nothing to do" in client.get(_path(meter)).text
    again = client.post(_path(meter), data={"meter": meter, "csrf": csrf})
    assert again.status_code == 409
    assert len(_changes(portal)) == 1
    assert client.get(_path("no-such-meter")).status_code == 404


def test_an_operator_or_a_customer_cannot_revoke(portal: Portal, store: Store) -> None:
    portal = _app(portal, store, writable=True)
    meter = sorted(_revoked(portal))[0]
    for account in (OPERATOR, portal.customer(0)[1]):
        client, _ = sign_in(portal, account)
        assert client.get(_path(meter)).status_code == 403
        form = {"meter": meter, "csrf": client.cookies[CSRF_COOKIE]}
        assert client.post(_path(meter), data=form).status_code == 403, account
    anonymous = TestClient(portal.app, follow_redirects=False)
    assert anonymous.post(_path(meter), data={"meter": meter}).status_code == 303
    assert _revoked(portal)[meter] is None
    assert _changes(portal) == []


def test_a_portal_without_a_writable_store_says_it_cannot(portal: Portal, store: Store) -> None:
    portal = _app(portal, store, writable=False)
    meter = sorted(_revoked(portal))[0]
    client, _ = sign_in(portal, ADMINISTRATOR)
    page = client.get(_path(meter))
    assert "cannot change meters" in page.text
    assert '<form method="post" action="/portal/admin' not in page.text
    refused = client.post(_path(meter), data={"meter": meter, "csrf": csrf_of(page.text)})
    assert refused.status_code == 503
    assert _revoked(portal)[meter] is None
