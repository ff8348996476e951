"""The customer's apps page and hour charts in headless Chromium: consent given and withdrawn
with the keyboard, its effect on the router's deliveries, phone width, no CSP violation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from meterseal.dissemination.customers import customer_pseudonyms
from meterseal.portal.app import create_portal_app
from meterseal.portal.consent import RouterConsent
from meterseal.storage import Store
from tests.portal.conftest import Portal
from tests.portal.test_apps import ANON, KEY, Router
from tests.portal.test_browser import _serve, browser, page, shot, sign_in  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture
def with_router(portal: Portal) -> Iterator[tuple[Portal, Router, Store, str]]:
    router = Router()
    store = Store.open_read_only(portal.month.url)
    consent = RouterConsent(router.channel, KEY, ANON, store, "nats://router.test:4222")
    portal.app = create_portal_app(
        portal.bills, portal.people.authenticator, portal.accounts, None, consent
    )
    try:
        for url in _serve(portal):
            yield portal, router, store, url
    finally:
        store.close()


def test_consent_with_the_keyboard_in_chromium(
    with_router: tuple[Portal, Router, Store, str],
    page: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    portal, router, store, url = with_router
    customer, account, bill_id = portal.customer(0)
    mine = customer_pseudonyms(store, ANON, customer)[0].pseudonym
    sign_in(page, url, account)
    page.goto(f"{url}/portal/apps")
    # htmx swaps the answer in: the page is never reloaded (this mark would go).
    page.evaluate("window.notReloaded = true")
    grant = page.get_by_role("button", name="Let myapp read my readings")
    grant.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-done]")
    assert "myapp now receives your raw readings" in page.inner_text("[data-done]")
    assert router.receivers(mine) == {"agg", "myapp"}
    # The keyboard stays where it was: on the same app's button, which now withdraws.
    assert page.evaluate("document.activeElement.id") == "consent-myapp"
    assert page.evaluate("document.activeElement.textContent") == "Withdraw consent from myapp"
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, tmp_path, "portal-apps.png")
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-done]:has-text('no longer')")
    assert "myapp no longer receives your readings" in page.inner_text("[data-done]")
    assert router.receivers(mine) == {"agg"}  # withdrawn: the router delivers it no more
    assert page.evaluate("window.notReloaded") is True
    # The customer's access log shows both changes, oldest first.
    page.get_by_role("link", name="Who read my data").first.click()
    page.wait_for_url(f"{url}/portal/access")
    log = page.inner_text("main")
    assert log.index("consent given to myapp") < log.index("consent withdrawn from myapp")
    page.set_viewport_size({"width": 1000, "height": 900})
    page.goto(f"{url}/portal/bills/{quote(bill_id, safe='')}")
    page.locator("#hours").scroll_into_view_if_needed()
    assert page.locator("#hours svg").count() == 2
    shot(page, tmp_path, "portal-hours.png")
