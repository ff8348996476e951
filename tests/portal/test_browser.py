"""The portal in headless Chromium (Debian's, driven by Playwright): sign-in, bills, and the
customer's browser verifying a bill itself, green when all holds and red, with the reason,
when a bill, a reading proof or a tree head differs by one byte.

Tampering is done here, by intercepting the page's requests (Playwright's `page.route`) or
by editing what the browser kept: the product has no hook for it. Chromium absent: skipped
(MS_REQUIRE_SERVICES=1: failed). MS_PORTAL_SCREENSHOTS=1 also writes the screenshots to
docs/img/ (docs/portal.md shows them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cbor2
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from meterseal.transparency.merkle import MerkleTree
from tests.accounts.people import PASSWORD
from tests.billing.conftest import Month
from tests.billing.test_api import _bill
from tests.portal.conftest import Portal, serve_portal
from tests.services import require_service

CHROMIUM = os.environ.get("MS_CHROMIUM", "/usr/bin/chromium")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
VERIFIED = "✔ verified in your browser"

if True:  # imported lazily so that collecting this module never needs playwright
    try:
        from playwright.sync_api import Browser, Page, Route, sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        sync_playwright = None  # type: ignore[assignment]


def _probe() -> None:
    if sync_playwright is None:
        raise RuntimeError("the playwright package is not installed (dev extra)")
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} not found: apt-get install chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium (Playwright's own browser download is not used)."""
    require_service("Chromium", CHROMIUM, _probe)
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def served(portal: Portal) -> Iterator[str]:
    """The portal app over HTTP on 127.0.0.1 (a secure context for WebCrypto); its URL."""
    yield from _serve(portal)


def _serve(portal: Portal) -> Iterator[str]:
    config = uvicorn.Config(portal.app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the portal did not start"
        assert thread.is_alive(), "the portal's server stopped"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (nothing pinned, no tree head kept); CSP violations recorded."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    opened = context.new_page()
    violations: list[str] = []
    opened.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    opened.violations = violations  # type: ignore[attr-defined]
    yield opened
    assert violations == []
    context.close()


def sign_in(page: Page, url: str, account: str) -> None:
    """Sign in with the keyboard only: the name field has focus, Tab, Enter."""
    page.goto(f"{url}/portal/login")
    page.wait_for_function("() => document.activeElement?.id === 'username'")  # autofocus
    page.keyboard.type(account)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/portal/bills")


def verdict(page: Page) -> str:
    """The verification's final status line, once it has one."""
    status = page.locator("#verify [data-status]")
    page.wait_for_function(
        "() => !document.querySelector('#verify [data-status]').classList.contains('pending')",
        timeout=20_000,
    )
    return status.inner_text()


def open_bill(page: Page, url: str, bill_id: str) -> str:
    """Open a bill's page and wait for its verdict."""
    page.goto(f"{url}/portal/bills/{quote(bill_id, safe='')}")
    return verdict(page)


def flip(data: bytes, at: int) -> bytes:
    """`data` with the byte at `at` changed (one bit)."""
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def tamper_json(
    page: Page, matches: Callable[[str], bool], change: Callable[[dict[str, Any]], None]
) -> None:
    """Serve the API's JSON for URLs that `matches` altered by `change` (a test-only hook)."""

    def handle(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        change(body)
        route.fulfill(response=response, body=json.dumps(body))

    page.route(matches, handle)


def shot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot of what the window shows; into docs/img too with MS_PORTAL_SCREENSHOTS=1."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("MS_PORTAL_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / name)


def test_a_customer_signs_in_sees_bills_and_the_browser_verifies(
    portal: Portal, served: str, page: Page, tmp_path: Path
) -> None:
    _, account, bill_id = portal.customer(0)
    sign_in(page, served, account)
    assert page.get_by_role("heading", name="Your bills").is_visible()
    stored = portal.bills.bill(bill_id)
    assert stored is not None
    assert f"{stored.total} {stored.currency}" in page.inner_text("main")
    shot(page, tmp_path, "portal-bills.png")
    page.get_by_role("link", name=re.compile(r"2026-10-30")).click()
    assert verdict(page) == VERIFIED
    checks = page.locator("#verify [data-checks] li").all_inner_texts()
    assert len(checks) == 6, checks
    assert any("pinned now, on first use" in c for c in checks)
    assert any("countersigned" in c for c in checks)
    assert any("first visit" in c for c in checks)
    shot(page, tmp_path, "portal-bill.png")
    # Again: the keys are the pinned ones and the log is consistent with the kept head.
    page.reload()
    assert verdict(page) == VERIFIED
    again = page.locator("#verify [data-checks] li").all_inner_texts()
    assert any("consistent with the tree head your browser kept (size 2)" in c for c in again)
    # Another reading, chosen with its button.
    button = page.get_by_role("button", name="Check this reading").nth(5)
    counter = button.get_attribute("data-counter")
    button.click()
    assert verdict(page) == VERIFIED
    assert any(
        f":{counter} is reading 6 of" in c for c in page.locator("#verify li").all_inner_texts()
    )
    # At phone width nothing sticks out sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, tmp_path, "portal-bill-phone.png")
    page.goto(f"{served}/portal/access")
    assert bill_id in page.inner_text("main")
    assert account in page.inner_text("main")


def test_another_customer_s_bill_is_not_found_in_the_browser(
    portal: Portal, served: str, page: Page
) -> None:
    sign_in(page, served, portal.customer(0)[1])
    theirs = portal.customer(1)[2]
    response = page.goto(f"{served}/portal/bills/{quote(theirs, safe='')}")
    assert response is not None
    assert response.status == 404
    assert "no bill" in page.inner_text("main")


def test_a_bill_altered_by_one_byte_turns_red(
    portal: Portal, served: str, page: Page, tmp_path: Path
) -> None:
    _, account, bill_id = portal.customer(0)
    sign_in(page, served, account)
    path = f"/v1/bills/{quote(bill_id, safe='')}"

    def alter_total(body: dict[str, Any]) -> None:
        signed = base64.b64decode(body["signed_bill"])
        at = signed.index(b"etotal") + 7  # the first character of the total's text
        body["signed_bill"] = base64.b64encode(flip(signed, at)).decode()

    tamper_json(page, lambda url: url.endswith(path), alter_total)
    status = open_bill(page, served, bill_id)
    assert status == (
        "✘ verification failed: the billing service's signature on the bill does not verify"
    )
    assert page.locator("#verify .status.failed").is_visible()
    shot(page, tmp_path, "portal-bill-tampered.png")


def test_a_reading_proof_altered_by_one_byte_turns_red(
    portal: Portal, served: str, page: Page
) -> None:
    _, account, bill_id = portal.customer(0)
    sign_in(page, served, account)

    def alter_path(body: dict[str, Any]) -> None:
        body["path"][0] = flip(bytes.fromhex(body["path"][0]), 31).hex()

    tamper_json(page, lambda url: url.endswith("/proof"), alter_path)
    status = open_bill(page, served, bill_id)
    assert status.startswith("✘ verification failed: reading ")
    assert status.endswith("its inclusion proof does not lead to the bill's signed Merkle root")


def test_a_signed_tree_head_altered_by_one_byte_turns_red(
    portal: Portal, served: str, page: Page
) -> None:
    _, account, bill_id = portal.customer(0)
    sign_in(page, served, account)

    def alter_head(body: dict[str, Any]) -> None:
        head = base64.b64decode(body["signed_head"])
        body["signed_head"] = base64.b64encode(flip(head, len(head) - 40)).decode()

    tamper_json(page, lambda url: "/v1/bill-log/inclusion/" in url, alter_head)
    status = open_bill(page, served, bill_id)
    assert status == (
        "✘ verification failed: the billing service's signature on the bill log's tree head "
        "does not verify"
    )


def _kept(page: Page, size: int, root: bytes) -> None:
    head = {"size": size, "root": root.hex(), "seen_at": "2026-10-31T00:00:00Z"}
    page.evaluate(
        "head => localStorage.setItem('meterseal.bill-log-head', JSON.stringify(head))", head
    )


def test_the_kept_tree_head_is_checked_by_a_consistency_proof(
    portal: Portal, served: str, page: Page
) -> None:
    _, account, bill_id = portal.customer(0)
    sign_in(page, served, account)
    tree = MerkleTree(portal.bills.log_leaves())
    assert tree.size == 2
    # A head of size 1 seen earlier: the log grew to 2, proven consistent.
    _kept(page, 1, tree.root_at(1))
    assert open_bill(page, served, bill_id) == VERIFIED
    assert any("(size 1)" in c for c in page.locator("#verify li").all_inner_texts())
    # The kept head altered by one byte (or a log rewritten since): red, with the reason.
    for size in (1, 2):
        _kept(page, size, flip(tree.root_at(size), 0))
        status = open_bill(page, served, bill_id)
        assert status.startswith("✘ verification failed: the bill log is not consistent with")
        assert f"(size {size})" in status


def test_changed_published_keys_are_refused_not_re_pinned(
    portal: Portal, served: str, page: Page
) -> None:
    _, account, bill_id = portal.customer(0)
    sign_in(page, served, account)
    assert open_bill(page, served, bill_id) == VERIFIED

    def swap(body: dict[str, Any]) -> None:
        body["keys"][0]["spki"], body["keys"][1]["spki"] = (
            body["keys"][1]["spki"],
            body["keys"][0]["spki"],
        )

    tamper_json(page, lambda url: url.endswith("/v1/keys"), swap)
    status = open_bill(page, served, bill_id)
    assert status.startswith("✘ verification failed: the deployment's published keys are not")


# The CBOR decoder, in the browser: RFC 8949 Appendix A examples, strictness, and values
# cbor2 encodes, compared through one neutral form.
# Its first line is a comment; Playwright takes the rest as the function to call.
_NEUTRAL_JS = (Path(__file__).parent / "neutral.js").read_text().partition("\n")[2]


def neutral(value: Any) -> dict[str, Any]:
    """The neutral form of a cbor2-decoded value (as _NEUTRAL_JS makes of the browser's)."""
    if isinstance(value, bool) or value is None:
        return {"simple": {True: "true", False: "false", None: "null"}[value]}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, list | tuple):
        return {"array": [neutral(v) for v in value]}
    if isinstance(value, dict | cbor2.frozendict):  # frozendict: a map inside a tag
        return {"map": [[neutral(k), neutral(v)] for k, v in value.items()]}
    if isinstance(value, cbor2.CBORTag):
        return {"tag": str(value.tag), "value": neutral(value.value)}
    raise TypeError(type(value))


def decoded_in_browser(page: Page, items: list[bytes]) -> list[dict[str, Any]]:
    """What the browser's cbor.js makes of each of `items`."""
    result: list[dict[str, Any]] = page.evaluate(_NEUTRAL_JS, [[i.hex() for i in items]])
    return result


@pytest.fixture
def origin_page(served: str, page: Page) -> Page:
    """A page of the portal's origin, so that its modules import under its CSP."""
    page.goto(f"{served}/portal/login")
    return page


RFC8949_EXAMPLES = {  # RFC 8949 Appendix A: encoded hex -> diagnostic value (neutral form)
    "00": {"int": "0"},
    "17": {"int": "23"},
    "1818": {"int": "24"},
    "1903e8": {"int": "1000"},
    "1b000000e8d4a51000": {"int": "1000000000000"},
    "1bffffffffffffffff": {"int": "18446744073709551615"},
    "20": {"int": "-1"},
    "3903e7": {"int": "-1000"},
    "3bffffffffffffffff": {"int": "-18446744073709551616"},
    "f93e00": {"float": "1.5"},
    "f90001": {"float": "5.960464477539063e-8"},
    "fb3ff199999999999a": {"float": "1.1"},
    "fa7f800000": {"float": "Infinity"},
    "f4": {"simple": "false"},
    "f6": {"simple": "null"},
    "4401020304": {"bytes": "01020304"},
    "6449455446": {"text": "IETF"},
    "62c3bc": {"text": "\u00fc"},
    "83010203": {"array": [{"int": "1"}, {"int": "2"}, {"int": "3"}]},
    "a201020304": {"map": [[{"int": "1"}, {"int": "2"}], [{"int": "3"}, {"int": "4"}]]},
    "c11a514b67b0": {"tag": "1", "value": {"int": "1363896240"}},
}
REFUSED = {
    "5f42010243030405ff": "indefinite",  # indefinite-length byte string
    "9fff": "indefinite",
    "0000": "trailing",
    "a201020103": "duplicate",
    "62c328": "UTF-8",
    "5a00000010": "truncated",
    "1c": "reserved",
}


def test_the_cbor_decoder_in_the_browser_follows_rfc_8949(origin_page: Page) -> None:
    items = [bytes.fromhex(h) for h in RFC8949_EXAMPLES]
    assert decoded_in_browser(origin_page, items) == list(RFC8949_EXAMPLES.values())
    refused = decoded_in_browser(origin_page, [bytes.fromhex(h) for h in REFUSED])
    for (encoded, why), result in zip(REFUSED.items(), refused, strict=True):
        assert "error" in result, encoded
        assert result["error"].startswith("CborError"), result
        assert why in result["error"], result


_cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.integers(-30, 30) | st.text(max_size=5), inner, max_size=5)
        # Tags cbor2 gives no meaning to (it decodes 0-5, 1004 and others into Python types).
        | st.builds(cbor2.CBORTag, st.just(18) | st.integers(40_000, 2**32), inner)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("_", [None])  # hypothesis shares the browser page across examples
def test_the_cbor_decoder_agrees_with_cbor2(origin_page: Page, _: None) -> None:
    @settings(max_examples=40, deadline=None, database=None)
    @given(st.lists(_cbor_values, min_size=1, max_size=10))
    def agrees(values: list[Any]) -> None:
        encoded = [cbor2.dumps(v, canonical=True) for v in values]
        expected = [neutral(cbor2.loads(e)) for e in encoded]
        assert decoded_in_browser(origin_page, encoded) == expected

    agrees()


@pytest.fixture
def unaudited(month: Month) -> Iterator[str]:
    """The portal over bills nobody audited (so none is countersigned), served; its URL."""
    for portal in serve_portal(month, _bill(month, audit=False)):
        yield from _serve(portal)


def test_a_bill_not_countersigned_is_not_verified(unaudited: str, page: Page) -> None:
    sign_in(page, unaudited, "customer0")
    page.get_by_role("link", name=re.compile(r"2026-10-30")).click()
    assert verdict(page) == (
        "not verified: the metrology authority has not countersigned this bill yet (no clean audit)"
    )
    assert page.locator("#verify .status.unverifiable").is_visible()


MERKLE_VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"
_MERKLE_JS = """
async ([inclusion, consistency]) => {
  const { verifyInclusion, verifyConsistency, fromHex } = await import('/portal/static/verify.js');
  const out = [];
  for (const [leaf, index, size, path, root] of inclusion) {
    out.push(await verifyInclusion(fromHex(leaf), index, size, path.map(fromHex), fromHex(root)));
  }
  for (const [first, second, proof, root1, root2] of consistency) {
    const [r1, r2] = [fromHex(root1), fromHex(root2)];
    out.push(await verifyConsistency(first, second, proof.map(fromHex), r1, r2));
  }
  return out;
}
"""


def _hex(text: str) -> str:
    return base64.b64decode(text).hex()


def test_the_browser_s_merkle_checks_agree_with_the_transparency_dev_vectors(
    origin_page: Page,
) -> None:
    inclusion, consistency, expected = [], [], []
    for path in sorted((MERKLE_VECTORS / "inclusion").rglob("*.json")):
        v = json.loads(path.read_text())
        proof = [_hex(h) for h in v["proof"] or []]
        inclusion.append([_hex(v["leafHash"]), v["leafIdx"], v["treeSize"], proof, _hex(v["root"])])
        expected.append((path.name, not v["wantErr"]))
    for path in sorted((MERKLE_VECTORS / "consistency").rglob("*.json")):
        v = json.loads(path.read_text())
        proof = [_hex(h) for h in v["proof"] or []]
        consistency.append([v["size1"], v["size2"], proof, _hex(v["root1"]), _hex(v["root2"])])
        expected.append((path.name, not v["wantErr"]))
    assert len(expected) >= 180
    verdicts = origin_page.evaluate(_MERKLE_JS, [inclusion, consistency])
    assert [(name, ok) for (name, _), ok in zip(expected, verdicts, strict=True)] == expected
