"""An accessibility pass over every page a role reaches, in headless Chromium at phone width:
each form control labelled, each link and button named, one h1, no duplicate ids, charts
named, nothing wider than the screen, and the keyboard reaching every control in order
(skip link first, focus always visible). Uses test_browser's fixtures (no CSP violation)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, ViewportSize

from meterseal.portal.health import HealthProbe, parse_targets
from tests.billing.test_api import ADMINISTRATOR, AUDITOR, OPERATOR
from tests.portal.conftest import Portal
from tests.portal.test_browser import _serve, browser, page, sign_in  # noqa: F401 - fixtures
from tests.portal.test_services_health import _with
from tests.portal.test_staff_browser import staff_sign_in

PHONE: ViewportSize = {"width": 390, "height": 844}

# Problems of the page as a list of strings (empty: none found).
AUDIT = """() => {
  const problems = [], named = el => (el.getAttribute('aria-label')
    || (el.getAttribute('aria-labelledby') || '').split(' ').map(
         id => document.getElementById(id)?.textContent || '').join('')
    || el.textContent || el.getAttribute('title') || '').trim();
  if (!document.documentElement.lang) problems.push('html without lang');
  if (!document.title.trim()) problems.push('no title');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(h1 + ' h1 elements');
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea'))
    if (!el.labels?.length && !named(el)) problems.push('unlabelled ' + el.outerHTML.slice(0, 90));
  for (const el of document.querySelectorAll('a[href], button, summary'))
    if (!named(el)) problems.push('nameless ' + el.outerHTML.slice(0, 90));
  for (const el of document.querySelectorAll('[tabindex]'))
    if (el.tabIndex > 0) problems.push('positive tabindex ' + el.outerHTML.slice(0, 60));
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i)))
    problems.push('id twice: ' + id);
  for (const svg of document.querySelectorAll('main svg'))
    if (!(svg.getAttribute('role') === 'img' && named(svg)) && !svg.querySelector('title'))
      problems.push('chart without a name');
  for (const table of document.querySelectorAll('main table'))
    if (!table.querySelector('th')) problems.push('table without headers');
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.push('wider than the screen: ' + document.documentElement.scrollWidth);
  return problems;
}"""

# The controls the keyboard should reach, in document order.
FOCUSABLE = """() => [...document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary')]
  .filter(el => !el.disabled && el.offsetParent !== null || el.classList.contains('skip'))
  .filter(el => !el.closest('details:not([open])') || el.tagName === 'SUMMARY')
  .map(el => el.outerHTML.slice(0, 120))"""


def _walk(tab: Page, limit: int) -> list[str]:
    """Tab from the top until focus leaves the page's controls; each focused one's markup."""
    # Sequential navigation starts after the focused element: a focusable-by-script marker
    # first in the body, focused, then removed once the first Tab has left it.
    tab.evaluate(
        """() => { const start = document.createElement('span');
             start.tabIndex = -1; start.id = 'walk-start';
             document.body.prepend(start); start.focus(); }"""
    )
    reached: list[str] = []
    for _ in range(limit):
        tab.keyboard.press("Tab")
        tab.evaluate("document.getElementById('walk-start')?.remove()")
        focused = tab.evaluate(
            """() => { const el = document.activeElement;
                 if (!el || el === document.body) return null;
                 const style = getComputedStyle(el);
                 return [el.outerHTML.slice(0, 120), style.outlineStyle !== 'none'
                         && parseFloat(style.outlineWidth) >= 2]; }"""
        )
        if focused is None or (reached and focused[0] == reached[0]):
            break
        assert focused[1], f"focus not visible on {focused[0]}"
        reached.append(focused[0])
    return reached


def _check(tab: Page, url: str) -> None:
    tab.goto(url)
    tab.wait_for_load_state("load")
    problems = tab.evaluate(AUDIT)
    assert problems == [], (url, problems)
    expected = tab.evaluate(FOCUSABLE)
    reached = _walk(tab, len(expected) + 20)
    # Chromium also stops on a table scrolled sideways without a control inside (to scroll
    # it with the arrow keys): allowed, with its focus visible too.
    assert [r for r in reached if not r.startswith('<div class="scroll">')] == expected, url


@pytest.fixture
def served(portal: Portal) -> Iterator[str]:
    _with(portal, HealthProbe(parse_targets("gone=http://127.0.0.1:9"), timeout=1.0))
    yield from _serve(portal)


def test_every_page_is_labelled_keyboard_reachable_and_fits_a_phone(
    portal: Portal,
    served: str,
    page: Page,  # noqa: F811
) -> None:
    url = served
    page.set_viewport_size(PHONE)
    _check(page, f"{url}/portal/login")
    _, account, bill_id = portal.customer(0)
    sign_in(page, url, account)
    for path in ("/portal/bills", f"/portal/bills/{quote(bill_id, safe='')}", "/portal/apps",
                 "/portal/access"):  # fmt: skip
        _check(page, f"{url}{path}")
    staff_sign_in(page, url, AUDITOR, "/portal/audit")
    for path in ("/portal/audit", "/portal/audit/bills", "/portal/audit/log"):
        _check(page, f"{url}{path}")
    staff_sign_in(page, url, OPERATOR, "/portal/fleet")
    for path in ("/portal/fleet", "/portal/fleet/load", "/portal/fleet/services"):
        _check(page, f"{url}{path}")
    staff_sign_in(page, url, ADMINISTRATOR, "/portal/admin/meters")
    for path in ("/portal/admin/meters", "/portal/admin/tariffs", "/portal/admin/changes"):
        _check(page, f"{url}{path}")
