"""The administrator's changes in headless Chromium, with the keyboard: a meter provisioned (a bad
paste said first), a tariff's next version published, a CAS secret rotated and a measurement
revoked after their confirmation pages, and the change log listing all of it with its chain
holding; every page fits a phone's width; no CSP violation (test_browser's page fixture).

Skipped without Chromium (failed under MS_REQUIRE_SERVICES=1). MS_PORTAL_SCREENSHOTS=1 writes
the screenshots to docs/img/ (docs/portal.md shows them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Page

from meterseal.trust.measurement import Measurement
from tests.billing.test_api import ADMINISTRATOR
from tests.portal.test_admin_tools import Tooled, csr_pem, tooled  # noqa: F401 - fixture
from tests.portal.test_browser import _serve, browser, page, shot  # noqa: F401 - fixtures
from tests.portal.test_staff_browser import staff_sign_in
from tests.trust.conftest import worker_measurement  # noqa: F401 - fixture

PAGES = [
    "/portal/admin/meters/new",
    "/portal/admin/tariffs/new",
    "/portal/admin/cas",
    "/portal/admin/cas/secrets/db-password/rotate",
    "/portal/admin/cas/secrets/db-password/revoke",
    "/portal/admin/changes",
]


def _select_and_type(tab: Page, text: str) -> None:
    tab.keyboard.press("Control+A")
    tab.keyboard.type(text)


def _provision(tab: Page, url: str, tmp_path: Path) -> None:
    tab.get_by_role("link", name="Provision a meter…").click()
    tab.wait_for_url(f"{url}/portal/admin/meters/new")
    tab.get_by_label("PEM").focus()
    tab.keyboard.type("hello")
    tab.keyboard.press("Tab")  # meter id: the request names it
    tab.keyboard.press("Tab")
    tab.keyboard.type("C-42")
    tab.keyboard.press("Tab")
    _select_and_type(tab, "R07")
    tab.keyboard.press("Enter")
    alert = tab.get_by_role("alert")
    assert "paste exactly one PEM" in alert.inner_text()
    shot(tab, tmp_path, "portal-admin-provision-error.png")
    tab.get_by_label("PEM").fill(csr_pem("ACME-42"))  # what a paste does
    assert tab.get_by_label("Customer id").input_value() == "C-42"  # kept from the first try
    tab.get_by_label("Region").focus()
    tab.keyboard.press("Enter")
    tab.get_by_role("heading", name="Meter provisioned").wait_for()
    assert "meter ACME-42 provisioned: customer C-42, region R07" in tab.inner_text("main")


def _publish(tab: Page, tooled: Tooled) -> None:  # noqa: F811
    tariff = tooled.portal.month.tariff
    tab.get_by_role("link", name="Tariffs", exact=True).click()
    tab.get_by_role(
        "link", name=f"Publish {tariff.tariff_id} version {tariff.version + 1}…"
    ).click()
    assert f"version = {tariff.version + 1}" in tab.get_by_label("Tariff (TOML)").input_value()
    tab.get_by_label("Tariff (TOML)").focus()
    tab.keyboard.press("Tab")  # to the Publish button
    tab.keyboard.press("Enter")
    tab.get_by_role("heading", name="Tariff published").wait_for()


def _rotate_and_revoke(tab: Page, tmp_path: Path, measurement: Measurement) -> None:
    tab.get_by_role("link", name="CAS", exact=True).click()
    tab.get_by_role("heading", name="Configuration and attestation service").wait_for()
    shot(tab, tmp_path, "portal-admin-cas.png")
    tab.get_by_role("link", name="Rotate db-password…").click()
    tab.get_by_role("button", name="Rotate secret db-password").focus()
    shot(tab, tmp_path, "portal-admin-rotate.png")
    tab.keyboard.press("Enter")
    tab.get_by_role("heading", name="Secret rotated").wait_for()
    tab.get_by_role("link", name="Back to the CAS").click()
    tab.get_by_role("link", name=f"Revoke {measurement.hex[:12]}…").first.click()
    tab.get_by_label("Reason").focus()
    tab.keyboard.type("host decommissioned")
    tab.keyboard.press("Enter")
    tab.get_by_role("heading", name="Measurement revoked").wait_for()


def test_an_administrator_changes_things_with_the_keyboard(
    tooled: Tooled,  # noqa: F811
    page: Page,  # noqa: F811
    tmp_path: Path,
    worker_measurement: Measurement,  # noqa: F811
) -> None:
    served: Iterator[str] = _serve(tooled.portal)
    url = next(served)
    try:
        staff_sign_in(page, url, ADMINISTRATOR, "/portal/admin/meters")
        _provision(page, url, tmp_path)
        _publish(page, tooled)
        _rotate_and_revoke(page, tmp_path, worker_measurement)
        page.get_by_role("link", name="Change log", exact=True).click()
        assert "The chain holds over all 5 entries" in page.get_by_role("status").inner_text()
        assert page.locator("tbody tr").count() == 5
        assert page.locator("tbody tr.failed").count() == 1  # the bad paste, refused
        shot(page, tmp_path, "portal-admin-changes.png")
        page.set_viewport_size({"width": 375, "height": 800})
        for path in [*PAGES, f"/portal/admin/cas/measurements/{worker_measurement.hex}/revoke"]:
            page.goto(f"{url}{path}")
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
        page.goto(f"{url}/portal/admin/meters/new")
        shot(page, tmp_path, "portal-admin-provision-phone.png")
    finally:
        next(served, None)
