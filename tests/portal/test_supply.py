"""Meter commands from the portal and the API: confirmed, signed, logged; staff only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from meterseal.commands.desk import CommandDesk
from meterseal.commands.keys import ensure_operator_key
from meterseal.commands.logfile import CommandLogFile
from meterseal.portal.app import CSRF_COOKIE, PublishedKeys, create_portal_app
from meterseal.portal.supply import NO_DESK
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from meterseal.storage.fleet import FleetStore
from tests.billing.test_api import ADMINISTRATOR, AUDITOR, OPERATOR
from tests.conftest import NOW
from tests.portal.conftest import Portal
from tests.portal.test_pages import csrf_of
from tests.portal.test_staff import sign_in

METER = "BILL-000001"  # a meter of the billing fixture's fleet
PATH = f"/portal/meters/{quote(METER, safe='')}/supply"


def _app(portal: Portal, desk: CommandDesk | None) -> Portal:
    month = portal.month
    keys = PublishedKeys(month.billing_key.public_key(), month.authority_key.public_key())
    store = Store.open_read_only(month.url)
    app = create_portal_app(
        BillStore(store), portal.people.authenticator, portal.accounts, keys,
        fleet=FleetStore(store), clock=NOW.timestamp, commands=desk,
    )  # fmt: skip
    return Portal(
        month, app, portal.bills, portal.billed, portal.people, portal.customers, portal.accounts
    )


def _desk(tmp_path: Path) -> CommandDesk:
    key, _ = ensure_operator_key(tmp_path, None)
    return CommandDesk(key, CommandLogFile(tmp_path / "commands.log"), outbox=tmp_path / "outbox")


def test_an_operator_confirms_a_disconnection_and_it_is_signed_and_logged(
    portal: Portal, tmp_path: Path
) -> None:
    desk = _desk(tmp_path)
    portal = _app(portal, desk)
    client, _ = sign_in(portal, OPERATOR)
    page = client.get(PATH)
    assert page.status_code == 200
    assert "Disconnect the load" in page.text
    csrf = csrf_of(page.text)
    form = {"meter": METER, "action": "disconnect", "csrf": csrf}
    assert client.post(PATH, data=form).status_code == 400  # not confirmed
    assert client.post(PATH, data=form | {"meter": "other", "confirm": "yes"}).status_code == 400
    assert client.post(PATH, data={"meter": METER, "confirm": "yes"}).status_code == 403  # no CSRF
    assert desk.log.entries() == []
    done = client.post(PATH, data=form | {"confirm": "yes"})
    assert done.status_code == 200, done.text
    assert f"{METER}#1 disconnect issued" in done.text
    assert (tmp_path / "outbox" / f"{METER}-1.cose").exists()
    (tracked,) = desk.report().commands.values()
    assert (tracked.command.id, tracked.command.action.value) == (f"{METER}#1", "disconnect")
    assert tracked.command.by == OPERATOR  # the signed command names who sent it
    assert client.get("/portal/meters/NO-SUCH/supply").status_code == 404
    listing = client.get("/portal/commands")
    assert f"{METER}#1" in listing.text
    assert desk.log.entries()[-1].digest.hex() in listing.text


def test_the_api_sends_and_lists_commands_for_staff_only(portal: Portal, tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    portal = _app(portal, desk)
    admin = TestClient(portal.app)
    headers = portal.people.headers(ADMINISTRATOR)
    sent = admin.post(f"/v1/meters/{METER}/commands", json={"action": "connect"}, headers=headers)
    assert sent.status_code == 201, sent.text
    assert sent.json()["id"] == f"{METER}#1"
    assert sent.json()["state"] == "issued"
    assert sent.json()["by"] == ADMINISTRATOR
    bad = admin.post(f"/v1/meters/{METER}/commands", json={"action": "set-clock"}, headers=headers)
    assert bad.status_code == 422
    stranger = admin.post("/v1/meters/NO-SUCH/commands", json={"action": "read"}, headers=headers)
    assert stranger.status_code == 404  # not a meter of the fleet: nothing signed, nothing logged
    listed = admin.get("/v1/commands", headers=headers).json()
    assert [c["id"] for c in listed] == [f"{METER}#1"]
    for account in (AUDITOR, portal.customer(0)[1]):
        client, _ = sign_in(portal, account)
        assert client.get(PATH).status_code == 403
        assert client.get("/v1/commands", headers=portal.people.headers(account)).status_code == 403
        form = {"meter": METER, "action": "disconnect", "confirm": "yes",
                "csrf": client.cookies[CSRF_COOKIE]}  # fmt: skip
        assert client.post(PATH, data=form).status_code == 403
    assert TestClient(portal.app).get("/v1/commands").status_code == 401
    assert len(desk.log.entries()) == 1


def test_a_portal_without_the_command_key_says_it_cannot(portal: Portal) -> None:
    portal = _app(portal, None)
    client, _ = sign_in(portal, OPERATOR)
    assert NO_DESK in client.get(PATH).text
    form = {"meter": METER, "action": "disconnect", "confirm": "yes",
            "csrf": client.cookies[CSRF_COOKIE]}  # fmt: skip
    assert client.post(PATH, data=form).status_code == 503


def test_the_command_api_answers_as_its_openapi_says(portal: Portal, tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    from tests.openapi_check import conforms

    portal = _app(portal, _desk(tmp_path))
    staff = portal.people.headers(OPERATOR)
    assert conforms(portal.app, staff) == []


def test_a_disconnection_over_http_is_staff_only_and_its_answer_shows_in_the_portal(
    portal: Portal, tmp_path: Path
) -> None:
    from meterseal.commands.agent import CommandAnswerer
    from meterseal.commands.model import Outcome
    from meterseal.commands.verify import CommandVerifier
    from meterseal.crypto.keys import generate_meter_key
    from meterseal.crypto.suites import P256

    desk = _desk(tmp_path)
    portal = _app(portal, desk)
    api = TestClient(portal.app)
    route, body = f"/v1/meters/{METER}/commands", {"action": "disconnect"}
    assert api.post(route, json=body).status_code == 401
    for account in (AUDITOR, portal.customer(0)[1]):
        refused = api.post(route, json=body, headers=portal.people.headers(account))
        assert refused.status_code == 403, account
    assert desk.log.entries() == []  # nothing signed for anyone but staff
    sent = api.post(route, json=body, headers=portal.people.headers(OPERATOR))
    assert sent.status_code == 201, sent.text
    assert (sent.json()["id"], sent.json()["by"]) == (f"{METER}#1", OPERATOR)

    # The meter's agent carries it out; its signed answer, logged, shows on the meter's page.
    meter_key = generate_meter_key(METER, P256)
    agent = CommandAnswerer(
        CommandVerifier([METER], {desk.key.kid: desk.key.signer()}), {METER: meter_key}
    )
    signed = (tmp_path / "outbox" / f"{METER}-1.cose").read_bytes()
    command = agent.admit(signed, int(NOW.timestamp())).command
    assert command is not None
    at = int(NOW.timestamp())
    desk.record(agent.answer(signed, command, Outcome.DONE, "", at), at)
    client, _ = sign_in(portal, OPERATOR)
    page = " ".join(client.get(PATH).text.split())
    assert f"<code>{METER}#1</code></td><td>disconnect</td><td>{OPERATOR}</td><td>done</td>" in page
    listed = api.get("/v1/commands", headers=portal.people.headers(OPERATOR)).json()
    assert [(c["id"], c["state"]) for c in listed] == [(f"{METER}#1", "done")]
