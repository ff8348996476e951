"""The operator's pages: fleet health and regional load from the store; roles kept apart."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from meterseal.portal.app import PublishedKeys, create_portal_app
from meterseal.portal.fleet import health
from meterseal.runtime.auth import route_rules
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from meterseal.storage.fleet import FleetStore
from tests.billing.conftest import Month
from tests.billing.test_api import ADMINISTRATOR, AUDITOR, OPERATOR
from tests.conftest import NOW
from tests.portal.conftest import Portal
from tests.portal.test_staff import sign_in

OPERATOR_PAGES = ("/portal/fleet", "/portal/fleet/load")


@pytest.fixture
def operated(portal: Portal) -> Iterator[Portal]:
    """The portal with the operator's store attached, on the tests' clock (NOW)."""
    month: Month = portal.month
    store = Store.open_read_only(month.url)
    keys = PublishedKeys(month.billing_key.public_key(), month.authority_key.public_key())
    app: FastAPI = create_portal_app(
        BillStore(store),
        portal.people.authenticator,
        portal.accounts,
        keys,
        fleet=FleetStore(store),
        clock=NOW.timestamp,
    )
    try:
        yield Portal(
            month,
            app,
            portal.bills,
            portal.billed,
            portal.people,
            portal.customers,
            portal.accounts,
        )
    finally:
        store.close()


def _figure(page: str, element: str) -> str:
    match = re.search(rf'<dd id="{element}">([^<]*)</dd>', page)
    assert match, page
    return match.group(1)


def test_operator_routes_declare_their_role(operated: Portal) -> None:
    rules = route_rules(operated.app)
    for path in OPERATOR_PAGES:
        assert rules[f"GET {path}"] == ["role:operator"]


def test_only_an_operator_reaches_the_fleet_pages(operated: Portal) -> None:
    for account in (operated.customer(0)[1], AUDITOR, ADMINISTRATOR):
        client, _ = sign_in(operated, account)
        for path in OPERATOR_PAGES:
            assert client.get(path).status_code == 403, (account, path)
    anonymous = TestClient(operated.app, follow_redirects=False)
    assert anonymous.get("/portal/fleet").headers["location"] == "/portal/login"
    client, home = sign_in(operated, OPERATOR)
    assert home == "/portal/fleet"
    for path in ("/portal/audit", "/portal/bills"):
        assert client.get(path).status_code == 403


def test_fleet_health_from_the_store(operated: Portal) -> None:
    month = operated.month
    meters = [m.key.meter_id for m in month.fleet]
    now = NOW.timestamp()
    # Arrivals half an hour ago; one meter revoked, one judged malicious; refusals counted.
    month.execute("UPDATE signed_originals SET received_at = :t", t=now - 1800)
    month.execute("UPDATE meters SET revoked_at = :t WHERE meter_id = :m", t=NOW, m=meters[2])
    month.execute(
        "INSERT INTO meter_integrity VALUES (:m, 'malicious', :why, 1, :t, :r)",
        why="unexpected syscall openat",
        m=meters[0],
        t=NOW,
        r=b"report",
    )
    month.execute("INSERT INTO ingest_counters VALUES ('bad_signature', 7), ('replayed', 2)")
    for reason in ("bad_signature", "bad_signature", "replayed"):
        month.execute(
            "INSERT INTO quarantine (received_at, reason, source, packet) "
            "VALUES (:t, :r, 'tcp:10.0.0.9:5000', :p)",
            t=now - 60,
            r=reason,
            p=b"\x00" * 40,
        )
    client, _ = sign_in(operated, OPERATOR)
    page = client.get("/portal/fleet?hours=48").text
    assert _figure(page, "registered") == "3 (1 revoked)"
    # The readings end on 2026-10-30 23:45, 36 h 15 min before NOW: online within 48 h.
    assert _figure(page, "online").startswith("2 with a reading")
    assert _figure(page, "ingest").startswith(
        f"{3 * 96} readings stored in the window: 6.0 per hour"
    )
    assert _figure(page, "held").startswith("1 judged malicious")
    assert "unexpected syscall openat" in page
    assert re.search(r"<code>bad_signature</code></td><td class=\"num\">7<", page)
    assert re.search(r"<code>bad_signature</code></td><td class=\"num\">2<", page)  # kept
    assert page.count("tcp:10.0.0.9:5000") == 3
    # Within 24 h nobody sent: both active meters are silent, with their newest reading.
    page = client.get("/portal/fleet?hours=24").text
    assert _figure(page, "online").startswith("0 with a reading")
    assert page.count("2026-10-30 23:45") == 2
    assert client.get("/portal/fleet?hours=0").status_code == 422


def test_regional_load_charts_one_region_per_hour(operated: Portal) -> None:
    client, _ = sign_in(operated, OPERATOR)
    page = client.get("/portal/fleet/load").text  # defaults to the newest measurement's day
    assert 'value="2026-10-30"' in page
    regions = sorted({m.region_id for m in operated.month.fleet})
    assert page.count("<svg") == len(regions)
    for region in regions:
        assert f"Load of region {region} per hour, 2026-10-30 (UTC)" in page
    # The page's figures are the anonymized measurements' sums, and no meter id shows.
    store = operated.month.store
    rows = store.regional_load(
        int(dt.datetime(2026, 10, 30, tzinfo=dt.UTC).timestamp()),
        int(dt.datetime(2026, 10, 31, tzinfo=dt.UTC).timestamp()),
    )
    total = sum(r.energy_wh for r in rows if r.region_id == regions[0])
    assert f"{total / 1000:.3f}" in page
    assert sum(r.readings for r in rows) == 3 * 96
    for meter in operated.month.fleet:
        assert meter.key.meter_id not in page
        assert meter.customer_id not in page
    empty = client.get("/portal/fleet/load?day=2026-10-01").text
    assert "No measurement on 2026-10-01" in empty
    assert client.get("/portal/fleet/load?day=nonsense").status_code == 422


def test_without_a_fleet_store_the_pages_say_so(portal: Portal) -> None:
    client, _ = sign_in(portal, OPERATOR)
    refused = client.get("/portal/fleet")
    assert refused.status_code == 503
    assert "reads no fleet store" in refused.text
    # The minute's refresh (htmx) gets the element it was to replace, saying why.
    htmx = {"HX-Request": "true", "HX-Target": "fleet-live"}
    part = client.get("/portal/fleet?hours=24", headers=htmx)
    assert part.status_code == 503
    assert part.text.lstrip().startswith('<div id="fleet-live" class="status failed" role="alert">')
    assert "reads no fleet store" in part.text
    assert "<html" not in part.text
    odd = client.get("/portal/fleet", headers={**htmx, "HX-Target": '"><script>'})
    assert "<html" in odd.text  # an id that is not one: the whole page, nothing echoed
    assert "<script>" not in odd.text


def test_health_counts_a_meter_without_readings_as_silent() -> None:
    report = health([], {}, {"stored": 5}, {}, {}, [], [], NOW.timestamp(), 24)
    assert (report.registered, report.online, report.received, report.rejected) == (0, 0, 0, ())
    assert report.accepted == (("stored", 5), ("duplicate", 0))


ADMIN_PAGES = ("/portal/admin/meters", "/portal/admin/tariffs")


def test_only_an_administrator_reaches_the_admin_pages(operated: Portal) -> None:
    rules = route_rules(operated.app)
    for path in ADMIN_PAGES:
        assert rules[f"GET {path}"] == ["role:administrator"]
    for account in (operated.customer(0)[1], AUDITOR, OPERATOR):
        client, _ = sign_in(operated, account)
        for path in ADMIN_PAGES:
            assert client.get(path).status_code == 403, (account, path)
    client, home = sign_in(operated, ADMINISTRATOR)
    assert home == "/portal/admin/meters"
    for path in ("/portal/audit", "/portal/fleet", "/portal/bills"):
        assert client.get(path).status_code == 403


def test_the_administrator_lists_meters_and_tariffs(operated: Portal) -> None:
    month = operated.month
    meters = sorted(m.key.meter_id for m in month.fleet)
    month.execute("UPDATE meters SET revoked_at = :t WHERE meter_id = :m", t=NOW, m=meters[1])
    month.execute(
        "INSERT INTO meter_integrity VALUES (:m, 'malicious', :why, 1, :t, :r)",
        why="text section changed",
        m=meters[0],
        t=NOW,
        r=b"report",
    )
    client, _ = sign_in(operated, ADMINISTRATOR)
    page = client.get("/portal/admin/meters").text
    rows = re.findall(r"<tr>\s*<td><code>([^<]+)</code></td>", page)
    assert rows == meters
    assert page.count("2026-10-30 23:45") == 3  # each meter's newest reading
    assert "malicious: text section changed" in page
    assert page.count("no report") == 2
    assert page.count("2026-11-01 12:00</strong>") == 1  # the revoked one
    tariffs = client.get("/portal/admin/tariffs").text
    tariff = month.tariff
    assert f"{tariff.tariff_id} version {tariff.version}" in tariffs
    assert tariff.digest().hex() in tariffs
    assert tariffs.count("<section") == len(month.bills.tariff_book())


def test_the_fleet_page_shows_service_health(operated: Portal) -> None:
    client, _ = sign_in(operated, OPERATOR)
    page = client.get("/portal/fleet").text
    assert "The store is ready" in page
    # A bill the operator may not read is counted by the API as not found, and shown here.
    client.get("/v1/bills/nobody/1-2")
    assert re.search(r"<code>not_found</code> \d+", client.get("/portal/fleet").text) is None
    api = TestClient(operated.app)
    headers = operated.people.headers(AUDITOR)
    assert api.get("/v1/bills/nobody/1-2", headers=headers).status_code == 404
    assert "<code>not_found</code> 1" in client.get("/portal/fleet").text
    # A store that cannot answer: the page says why, as /readyz would.
    down = create_portal_app(
        BillStore(operated.month.store),
        operated.people.authenticator,
        operated.accounts,
        None,
        fleet=_Down(operated.month.store),
    )
    client, _ = sign_in(Portal(**{**vars(operated), "app": down}), OPERATOR)
    refused = client.get("/portal/fleet")
    assert refused.status_code == 503
    assert "the store is not ready: database unreachable" in refused.text


class _Down(FleetStore):
    """A fleet store whose readiness check fails."""

    def not_ready(self) -> str | None:
        return "database unreachable"
