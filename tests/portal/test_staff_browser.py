"""The staff's pages in headless Chromium: an auditor signs in with the keyboard and finds a
named discrepancy; an operator's regional load charts render under the strict CSP.

Uses test_browser's Chromium, server and page fixtures (no CSP violation allowed on any page);
skipped without Chromium (failed under MS_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Page

from tests.accounts.people import PASSWORD
from tests.billing.test_api import AUDITOR, OPERATOR
from tests.portal.conftest import Portal
from tests.portal.test_browser import _serve, browser, page, shot  # noqa: F401 - fixtures
from tests.portal.test_fleet import operated  # noqa: F401 - fixture


def staff_sign_in(page: Page, url: str, account: str, home: str) -> None:  # noqa: F811
    """Sign in with the keyboard only; land on the role's home."""
    page.goto(f"{url}/portal/login")
    page.wait_for_function("() => document.activeElement?.id === 'username'")
    page.keyboard.type(account)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}{home}")


def test_an_auditor_signs_in_and_sees_a_named_discrepancy(
    operated: Portal,  # noqa: F811
    page: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    customer, _, bill_id = operated.customer(0)
    meter = operated.month.customer(customer)[0]
    operated.month.execute(
        "UPDATE signed_originals SET energy_wh = energy_wh + 1 WHERE meter_id = :m AND counter = "
        "(SELECT MIN(counter) FROM signed_originals WHERE meter_id = :m)",
        m=meter,
    )
    report = operated.month.auditor().audit(bill_id).report
    (altered,) = [f for f in report.findings if f.kind.value == "altered"]
    served: Iterator[str] = _serve(operated)
    url = next(served)
    try:
        staff_sign_in(page, url, AUDITOR, "/portal/audit")
        assert page.get_by_role("heading", name="Audit reports").is_visible()
        assert "altered \u00d7 1" in page.inner_text("main")
        page.get_by_role("link", name=f"#{report_id(operated, bill_id)}").click()
        row = page.locator("tbody tr", has_text="altered")
        assert f"{altered.meter_id} #{altered.counter}" in row.inner_text()
        shot(page, tmp_path, "portal-audit-report.png")
        page.get_by_role("link", name="Bill log").click()
        assert page.locator("tr.failed").count() == 0
        staff_sign_in(page, url, OPERATOR, "/portal/fleet")
        page.get_by_role("link", name="Regional load").click()
        assert page.locator("main svg").count() == len({m.region_id for m in operated.month.fleet})
        assert re.search(r"Region \S+", page.inner_text("main"))
        shot(page, tmp_path, "portal-regional-load.png")
    finally:
        next(served, None)


def report_id(portal: Portal, bill_id: str) -> int:
    """The newest audit report of `bill_id`."""
    return portal.bills.reports(bill_id, 1)[0].id
