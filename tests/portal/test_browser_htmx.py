"""htmx's partial updates in headless Chromium, under the strict CSP (no violation allowed):
the operator's Services table replaced in place, the access log paged in place, a session
that ended sends the browser to sign in; and the same pages without JavaScript.

Uses test_browser's fixtures; skipped without Chromium (failed under MS_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Page

from meterseal.accounts.model import AccessEntry
from meterseal.portal.health import HealthProbe, parse_targets
from tests.billing.test_api import OPERATOR
from tests.portal.conftest import Portal
from tests.portal.test_browser import _serve, browser, page, shot, sign_in  # noqa: F401
from tests.portal.test_fleet import operated  # noqa: F401 - fixture
from tests.portal.test_services_health import _with, services  # noqa: F401 - fixture
from tests.portal.test_staff_browser import staff_sign_in


def _served(portal: Portal) -> Iterator[str]:
    return _serve(portal)


def test_the_services_table_is_replaced_in_place(
    portal: Portal,
    services: dict[str, str],  # noqa: F811
    page: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    text = ", ".join(f"{name}={url}" for name, url in services.items())
    _with(portal, HealthProbe(parse_targets(text), timeout=5.0))
    served = _served(portal)
    url = next(served)
    try:
        staff_sign_in(page, url, OPERATOR, "/portal/fleet")
        page.get_by_role("link", name="Services").click()
        page.wait_for_url(f"{url}/portal/fleet/services")
        assert page.evaluate("htmx.config.allowEval") is False
        assert page.locator("style").count() == 0  # htmx added no indicator style
        heading = page.get_by_role("heading", name="2 of 5 services ready")
        assert heading.is_visible()
        # What the every-15-seconds trigger does, asked now: the table alone, swapped in.
        page.evaluate("window.notReloaded = true")
        page.evaluate("document.querySelector('#services').dataset.old = 'yes'")
        page.evaluate(
            "htmx.ajax('GET', '/portal/fleet/services', {source: '#services', "
            "target: '#services', swap: 'outerHTML'})"
        )
        page.wait_for_function("() => !document.querySelector('#services').dataset.old")
        assert page.locator("#services").count() == 1
        assert page.locator("main h1").count() == 1  # no page inside the page
        assert page.evaluate("window.notReloaded") is True
        row = page.locator('tr[data-service="router"]')
        assert "the bus is unreachable: nats gone" in row.inner_text()
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.set_viewport_size({"width": 1000, "height": 900})
        shot(page, tmp_path, "portal-services.png")
        # The session ends (signed out in another tab): the next refresh goes to sign in.
        page.context.clear_cookies()
        # Not awaited (a function returning nothing, not the request's promise): the answer's
        # HX-Redirect navigates away, which would end an evaluation still awaiting it.
        page.evaluate(
            "() => { htmx.ajax('GET', '/portal/fleet/services', {source: '#services', "
            "target: '#services', swap: 'outerHTML'}); }"
        )
        page.wait_for_url(f"{url}/portal/login")
    finally:
        next(served, None)


def test_the_access_log_pages_in_place_and_without_javascript(
    portal: Portal,
    page: Page,  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    customer, account, _ = portal.customer(0)
    now = time.time()
    portal.accounts.record(
        [AccessEntry(now, "ann", "auditor", "/v1/bills", customer, f"read {n}") for n in range(130)]
    )
    served = _served(portal)
    url = next(served)
    try:
        sign_in(page, url, account)
        page.goto(f"{url}/portal/access")
        page.evaluate("window.notReloaded = true")
        assert "read 0" in page.inner_text("main")
        assert "read 120" not in page.inner_text("main")
        page.get_by_role("link", name="Later entries").click()
        # A function, not an expression: Playwright evals an expression again at every poll,
        # which the strict CSP refuses once the first poll found it false (the swap pending).
        page.wait_for_function(
            "() => document.querySelector('main').innerText.includes('read 120')"
        )
        assert page.evaluate("window.notReloaded") is True
        assert page.locator("#access").count() == 1
        # Without JavaScript the same link is a plain page.
        plain = browser.new_context(java_script_enabled=False)
        try:
            bare = plain.new_page()
            sign_in_without_js(bare, url, account)
            bare.goto(f"{url}/portal/access")
            bare.get_by_role("link", name="Later entries").click()
            bare.wait_for_url(f"{url}/portal/access?after=*")
            assert "read 120" in bare.inner_text("main")
        finally:
            plain.close()
    finally:
        next(served, None)


def sign_in_without_js(page: Page, url: str, account: str) -> None:  # noqa: F811
    """The sign-in form filled and sent without any script (no autofocus wait)."""
    from tests.accounts.people import PASSWORD

    page.goto(f"{url}/portal/login")
    page.get_by_label("Account").fill(account)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/portal/bills")


def test_the_fleet_figures_refresh_in_place(
    operated: Portal,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    served = _served(operated)
    url = next(served)
    try:
        staff_sign_in(page, url, OPERATOR, "/portal/fleet")
        live = page.locator("#fleet-live")
        assert live.get_attribute("hx-trigger") == "every 60s"
        page.evaluate("window.notReloaded = true")
        page.evaluate("document.querySelector('#fleet-live').dataset.old = 'yes'")
        # What the minute's trigger does, now: the element's own hx-get and hx-select.
        page.evaluate(
            "const el = document.querySelector('#fleet-live');"
            "htmx.ajax('GET', el.getAttribute('hx-get'), {source: el, target: el,"
            " swap: 'outerHTML', select: el.getAttribute('hx-select')})"
        )
        page.wait_for_function("() => !document.querySelector('#fleet-live').dataset.old")
        assert page.locator("#fleet-live").count() == 1
        assert page.locator("main h1").count() == 1
        assert page.locator("#registered").is_visible()
        assert page.evaluate("window.notReloaded") is True
    finally:
        next(served, None)
