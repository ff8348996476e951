"""The staff's pages: each role signs in to its own home; roles kept apart; the auditor's pages."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from meterseal.portal import staff
from meterseal.portal.staff_views import HOMES
from meterseal.runtime.auth import check_access, route_rules
from tests.accounts.people import PASSWORD
from tests.billing.test_api import ADMINISTRATOR, AUDITOR, OPERATOR
from tests.portal.conftest import Portal
from tests.portal.test_pages import csrf_of

AUDITOR_PAGES = ("/portal/audit", "/portal/audit/bills", "/portal/audit/log")


def sign_in(portal: Portal, account: str) -> tuple[TestClient, str]:
    """A browser-like client signed in through the form as `account`; where it landed."""
    client = TestClient(portal.app, follow_redirects=False)
    form = {
        "username": account,
        "password": PASSWORD,
        "csrf": csrf_of(client.get("/portal/login").text),
    }
    response = client.post("/portal/login", data=form)
    assert response.status_code == 303, response.text
    return client, response.headers["location"]


def test_staff_routes_declare_their_role(portal: Portal) -> None:
    check_access(portal.app)
    rules = route_rules(portal.app)
    for path in AUDITOR_PAGES:
        assert rules[f"GET {path}"] == ["role:auditor"]
    assert rules["GET /portal/audit/reports/{report_id}"] == ["role:auditor"]


@pytest.mark.parametrize(
    ("account", "home"),
    [
        (AUDITOR, "/portal/audit"),
        (OPERATOR, "/portal/fleet"),
        (ADMINISTRATOR, "/portal/admin/meters"),
    ],
)
def test_each_staff_role_lands_on_its_own_home(portal: Portal, account: str, home: str) -> None:
    client, landed = sign_in(portal, account)
    assert landed == home
    assert client.get("/portal/").headers["location"] == home
    assert home in HOMES.values()


def test_a_customer_lands_on_bills_and_reaches_no_staff_page(portal: Portal) -> None:
    client, landed = sign_in(portal, portal.customer(0)[1])
    assert landed == "/portal/bills"
    report_id = portal.bills.reports(None, 1)[0].id
    for path in (*AUDITOR_PAGES, f"/portal/audit/reports/{report_id}"):
        refused = client.get(path)
        assert refused.status_code == 403, path
        assert "not for your account&#39;s role" in refused.text
        assert portal.customer(1)[2] not in refused.text
    assert "Audit reports" not in client.get("/portal/bills").text  # no staff links either


def test_anonymous_is_sent_to_sign_in_from_staff_pages(portal: Portal) -> None:
    client = TestClient(portal.app, follow_redirects=False)
    for path in AUDITOR_PAGES:
        assert client.get(path).headers["location"] == "/portal/login"


def test_other_staff_roles_reach_no_auditor_page(portal: Portal) -> None:
    for account in (OPERATOR, ADMINISTRATOR):
        client, _ = sign_in(portal, account)
        for path in AUDITOR_PAGES:
            assert client.get(path).status_code == 403, (account, path)
        assert client.get("/portal/bills").status_code == 403


def test_the_auditor_sees_clean_reports_then_a_named_discrepancy(portal: Portal) -> None:
    customer, _, bill_id = portal.customer(0)
    client, _ = sign_in(portal, AUDITOR)
    page = client.get("/portal/audit").text
    assert page.count("clean, countersigned") == 2
    assert bill_id in page
    # Someone with write access changes one stored reading; the auditor audits again.
    meter = portal.month.customer(customer)[0]
    portal.month.execute(
        "UPDATE signed_originals SET energy_wh = energy_wh + 1 WHERE meter_id = :m AND counter = "
        "(SELECT MIN(counter) FROM signed_originals WHERE meter_id = :m)",
        m=meter,
    )
    report = portal.month.auditor().audit(bill_id).report
    assert not report.clean
    page = client.get("/portal/audit").text
    assert '<strong class="over">discrepancies</strong>' in page
    assert re.search(r'class="kind">altered \u00d7 \d+</span>', page), page
    newest = portal.bills.reports(bill_id, 1)[0]
    one = client.get(f"/portal/audit/reports/{newest.id}")
    assert one.status_code == 200
    altered = [f for f in report.findings if f.kind.value == "altered"]
    assert altered
    assert one.text.count('<strong class="kind">altered</strong>') == len(altered)
    assert f"{altered[0].meter_id} #{altered[0].counter}" in one.text
    assert client.get("/portal/audit/reports/999999").status_code == 404
    # The reads are in the access log, under the customer whose bill it is.
    logged = portal.accounts.entries(customer_id=customer)
    assert any(e.subject == AUDITOR and e.route.startswith("/portal/audit") for e in logged)


def test_countersign_standing_per_bill(portal: Portal) -> None:
    customer, _, bill_id = portal.customer(0)
    client, _ = sign_in(portal, AUDITOR)
    page = client.get("/portal/audit/bills").text
    assert page.count('<span class="good">countersigned</span>') == 2
    portal.month.execute(
        "UPDATE signed_originals SET energy_wh = energy_wh + 1 WHERE meter_id = :m",
        m=portal.month.customer(customer)[0],
    )
    portal.month.auditor().audit(bill_id)
    page = client.get("/portal/audit/bills").text
    assert page.count('<span class="good">countersigned</span>') == 1
    assert "countersigned, later audit not clean" in page
    assert bill_id in page


def test_the_bill_log_heads_hold_and_a_rewritten_log_fails(portal: Portal) -> None:
    client, _ = sign_in(portal, AUDITOR)
    page = client.get("/portal/audit/log").text
    heads = portal.bills.log_heads()
    assert len(heads) >= 2
    # Every signature holds, and every older head is consistent with the newest.
    assert page.count("<td>holds</td>") == 2 * len(heads) - 1
    assert page.count("<td>latest</td>") == 1
    assert 'class="failed"' not in page
    # A leaf rewritten in place: the heads signed before no longer match the log.
    portal.month.execute("UPDATE bill_log SET leaf_hash = :h WHERE log_index = 0", h=b"\x01" * 32)
    page = client.get("/portal/audit/log").text
    assert page.count('class="failed"') == len(heads)
    assert page.count('<strong class="over">no</strong>') == len(heads)
    # A head's stored root changed: its signature and its consistency with the newest fail.
    oldest = heads[-1].head.size
    portal.month.execute(
        "UPDATE bill_log_heads SET root = :r WHERE tree_size = :s", r=b"\x02" * 32, s=oldest
    )
    page = client.get("/portal/audit/log").text
    assert "fails: the signed head differs from the stored columns" in page
    assert "fails: Merkle proof does not hold" in page


def test_auditor_page_links_stay_on_the_portal(portal: Portal) -> None:
    client, _ = sign_in(portal, AUDITOR)
    page = client.get("/portal/audit").text
    report_id = portal.bills.reports(None, 1)[0].id
    assert f'href="/portal/audit/reports/{report_id}"' in page
    assert 'href="/portal/bills"' not in page  # a customer's link is not an auditor's
    assert quote(portal.customer(0)[2], safe="") not in page


def test_countersign_page_lists_the_newest_log_entries_first(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = sign_in(portal, AUDITOR)
    page = client.get("/portal/audit/bills").text
    indices = [int(i) for i in re.findall(r'<td class="num">(\d+)</td>\s*<td class="id">', page)]
    assert indices == sorted(indices, reverse=True) == [1, 0]
    monkeypatch.setattr(staff, "BILLS_SHOWN", 1)
    page = client.get("/portal/audit/bills").text
    newest = max(portal.billed.values(), key=lambda b: portal.bills.bill(b).log_index)  # type: ignore[union-attr]
    assert newest in page
    assert sum(b in page for b in portal.billed.values()) == 1
