"""The customer's portal: server-rendered pages on the bills API's app, and its key set.

Pages (`/portal/…`, Jinja2 with autoescape): sign-in, the customer's bills, one bill with its
readings, daily chart and in-browser verification (static/verify.js), and who read their data.
Every route declares its rule (runtime.auth); whose bill it is comes from the store against the
signed-in identity, never from the URL: another customer's bill is the page of an unknown id.
Sessions are the API's login tokens in an HttpOnly, SameSite=Strict cookie (Secure over TLS),
revoked server-side on sign-out (a copied cookie stops working too); every form carries a CSRF
token that must match its cookie (double submit). The session signs in a GET or HEAD, and a
POST only with a matching CSRF token (accounts.authn: a POST with the cookie and no such token
is refused before any handler), so a form's route declares its real role rule. Pages send a
strict Content-Security-Policy: scripts and styles from this origin only, nothing inline.

`GET /v1/keys` publishes the deployment's public keys (billing, metrology authority), which
the browser pins on first use.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from meterseal.accounts.api import AccessRecorder
from meterseal.accounts.authn import (
    CSRF_REFUSED,
    AccountAuthenticator,
    csrf_matches,
    form_fields,
    request_source,
)
from meterseal.accounts.model import AccessLog, Role
from meterseal.billing.api import create_billing_app
from meterseal.billing.bill import manifest_from_cbor, parse_signed_bill
from meterseal.billing.ports import BillArchive, countersigned_of
from meterseal.commands.desk import CommandDesk
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.crypto.signing import VerifyingKey
from meterseal.errors import MetersealError
from meterseal.portal import hours, views
from meterseal.portal.admin import MeterRevocation
from meterseal.portal.admin_tools import AdminTools
from meterseal.portal.consent import RouterConsent
from meterseal.portal.fleet import FleetSource
from meterseal.portal.health import HealthProbe, add_health_routes
from meterseal.portal.staff import OPERATOR, StaffArchive, add_staff_routes
from meterseal.portal.staff_views import home_of
from meterseal.portal.supply import add_supply_routes
from meterseal.runtime.auth import PUBLIC, HasRole, Identity, access, identity_of

SESSION_COOKIE = "ms_session"
CSRF_COOKIE = "ms_csrf"
CSRF_FIELD = "csrf"
CUSTOMER = HasRole(Role.CUSTOMER.value)
# No inline script or style anywhere: the pages load /portal/static/* only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC = {
    "portal.css": "text/css; charset=utf-8",
    "cbor.js": "text/javascript; charset=utf-8",
    "verify.js": "text/javascript; charset=utf-8",
    "staff.css": "text/css; charset=utf-8",
    "vendor/htmx/htmx.min.js": "text/javascript; charset=utf-8",  # SOURCE says whence
}
NOT_YOURS = "this page is not for your account's role"


@dataclass(frozen=True)
class PublishedKeys:
    """The public keys a customer's browser pins: who signs bills and who countersigns."""

    billing: VerifyingKey
    authority: VerifyingKey


class KeyView(BaseModel):
    """One published public key: its role, COSE kid (hex), algorithm and SPKI DER (base64)."""

    role: str
    kid: str
    alg: str
    spki: str


class KeySet(BaseModel):
    """The deployment's published public keys."""

    keys: list[KeyView]


def key_set(keys: PublishedKeys | None) -> KeySet:
    """The key set `GET /v1/keys` serves (empty when the deployment's public keys are absent)."""
    views_ = []
    pairs = () if keys is None else (("billing", keys.billing), ("authority", keys.authority))
    for role, key in pairs:
        der = public_bytes(key)
        views_.append(KeyView(role=role, kid=kid_of(der).hex(), alg="ES256", spki=_b64(der)))
    return KeySet(keys=views_)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("meterseal.portal", "templates"),
        autoescape=True,  # every page: bill ids, labels and log entries are data
        undefined=jinja2.StrictUndefined,
    )
    env.filters["urlpart"] = lambda text: quote(str(text), safe="")
    return env


def _static(name: str) -> bytes:
    return resources.files("meterseal.portal").joinpath("static", *name.split("/")).read_bytes()


class _Pages:
    """The portal's handlers over one `BillArchive`."""

    def __init__(
        self,
        bills: BillArchive,
        authenticator: AccountAuthenticator,
        access_log: AccessLog | None,
    ) -> None:
        self.bills = bills
        self.authenticator = authenticator
        self.access_log = access_log
        self.reads = AccessRecorder(access_log)
        self.env = _templates()

    def render(
        self, request: Request, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page, with a CSRF token for its forms (a fresh cookie when it has none)."""
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        identity = getattr(request.state, "identity", None)
        html = self.env.get_template(name).render(
            csrf=token, identity=identity, path=request.url.path, **context
        )
        response = HTMLResponse(html, status)
        if request.cookies.get(CSRF_COOKIE) != token:
            _set_cookie(request, response, CSRF_COOKIE, token, None)
        return response


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=_secure(request),
        samesite="strict",
    )


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (first value each); 413/400 beyond the form limits."""
    return await form_fields(request)


def _csrf_holds(request: Request, form: dict[str, str]) -> bool:
    return csrf_matches(request, form, CSRF_COOKIE, CSRF_FIELD)


def add_portal_routes(
    app: FastAPI,
    bills: BillArchive,
    authenticator: AccountAuthenticator,
    access_log: AccessLog | None,
    keys: PublishedKeys | None,
) -> None:
    """Add the customer's pages, their static files and `GET /v1/keys` to the bills app."""
    pages = app.state.portal_pages = _Pages(bills, authenticator, access_log)
    published = key_set(keys)

    @app.middleware("http")
    async def page_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/portal"):
            response.headers.update(PAGE_HEADERS)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def page_errors(request: Request, exc: StarletteHTTPException) -> Response:
        # The API keeps its JSON errors; a page's refusal is a page.
        if not request.url.path.startswith("/portal/"):
            return await http_exception_handler(request, exc)
        if exc.status_code == 401:
            if request.headers.get("HX-Request") == "true":  # a partial update: reload whole
                return Response(status_code=204, headers={"HX-Redirect": "/portal/login"})
            return RedirectResponse("/portal/login", 303)
        detail = str(exc.detail)
        if exc.status_code == 403 and exc.detail != CSRF_REFUSED:
            detail = NOT_YOURS
        target = request.headers.get("HX-Target", "")
        if request.headers.get("HX-Request") == "true" and re.fullmatch(r"[\w-]{1,64}", target):
            part = "error_part.html"  # the element it was to replace, saying why
            return pages.render(request, part, exc.status_code, detail=detail, target=target)
        return pages.render(request, "error.html", exc.status_code, detail=detail)

    @app.get("/v1/keys", summary="The deployment's public keys", dependencies=[access(PUBLIC)])
    def public_keys() -> KeySet:
        return published

    @app.get("/portal/static/{name:path}", include_in_schema=False, dependencies=[access(PUBLIC)])
    def static(name: Annotated[str, Path(max_length=64)]) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/portal/", include_in_schema=False, dependencies=[access(PUBLIC)])
    def home(request: Request) -> Response:
        return RedirectResponse(home_of(identity_of(request).roles), 303)

    @app.get("/portal/login", include_in_schema=False, dependencies=[access(PUBLIC)])
    def login_page(request: Request) -> Response:
        return pages.render(request, "login.html", error=None, username="")

    @app.post("/portal/login", include_in_schema=False, dependencies=[access(PUBLIC)])
    async def login(request: Request) -> Response:
        form = await _form(request)
        username = form.get("username", "")[:64]
        if not _csrf_holds(request, form):
            return pages.render(request, "error.html", 403, detail=CSRF_REFUSED)
        try:
            token = await run_in_threadpool(
                authenticator.login,
                username,
                form.get("password", "")[:1024],
                request_source(request),
            )
        except HTTPException as exc:
            page = pages.render(
                request, "login.html", exc.status_code, error=exc.detail, username=username
            )
            page.headers.update(
                {k: v for k, v in (exc.headers or {}).items() if k != "WWW-Authenticate"}
            )
            return page
        account = await run_in_threadpool(authenticator.accounts.account, username)
        if account is None:  # removed between the two calls
            return pages.render(request, "login.html", 403, error=NOT_YOURS, username=username)
        response = RedirectResponse(home_of(r.value for r in account.roles), 303)
        _set_cookie(request, response, SESSION_COOKIE, token, int(authenticator.signer.ttl))
        _set_cookie(request, response, CSRF_COOKIE, secrets.token_urlsafe(32), None)
        return response

    @app.post("/portal/logout", include_in_schema=False, dependencies=[access(PUBLIC)])
    async def logout(request: Request) -> Response:
        form = await _form(request)
        if not _csrf_holds(request, form):
            return pages.render(request, "error.html", 403, detail=CSRF_REFUSED)
        token = request.cookies.get(SESSION_COOKIE)
        if token is not None and len(token) <= 4096:  # ended here, not only in this browser
            await run_in_threadpool(authenticator.sign_out, token)
        response = RedirectResponse("/portal/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True)
        return response

    @app.get("/portal/bills", include_in_schema=False)
    def bill_list(request: Request, identity: Annotated[Identity, access(CUSTOMER)]) -> Response:
        customer = identity.customer_id or ""
        rows = []
        for summary in bills.bill_summaries(customer):
            stored = bills.bill(summary.bill_id)
            if stored is None:
                continue
            rows.append((views.figures(parse_signed_bill(stored.signed_bill)[0]), summary))
        pages.reads.read(identity, "/portal/bills", customer, customer)
        return pages.render(request, "bills.html", rows=rows)

    @app.get("/portal/bills/{bill_id:path}", include_in_schema=False)
    def bill_page(
        request: Request,
        identity: Annotated[Identity, access(CUSTOMER)],
        bill_id: Annotated[str, Path(max_length=128)],
        day: Annotated[str | None, Query(max_length=10)] = None,
    ) -> Response:
        stored = bills.bill(bill_id)
        if stored is None or stored.customer_id != identity.customer_id:
            raise HTTPException(404, f"no bill {bill_id!r}")  # another's looks unknown
        try:
            bill = parse_signed_bill(stored.signed_bill)[0]
            keys_on = {(e.meter_id, e.counter) for e in manifest_from_cbor(stored.manifest)}
        except MetersealError as exc:
            raise HTTPException(500, f"the store holds a malformed bill: {exc}") from None
        pages.reads.read(identity, "/portal/bills/{bill_id:path}", stored.customer_id, bill_id)
        packets = views.on_manifest(
            bills.packets([m.meter_id for m in bill.meters], bill.period.start, bill.period.end),
            keys_on,
        )
        days = views.daily_energy(packets)
        chosen = next((d for d in days if d.isoformat() == day), next(iter(days), None))
        shown = [p for p in packets if views.day_of(p.timestamp) == chosen]
        return pages.render(
            request,
            "bill.html",
            bill=views.figures(bill),
            countersigned=countersigned_of(bills.reports(bill_id)) is not None,
            chart=views.daily_chart(days),
            days=days,
            chosen=chosen,
            readings=shown,
            hours=hours.hour_view(packets, chosen),
            kwh=views.kwh,
            when=views.utc,
        )

    @app.get("/portal/access", include_in_schema=False)
    def access_page(
        request: Request,
        identity: Annotated[Identity, access(CUSTOMER)],
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> Response:
        customer = identity.customer_id or ""
        entries = access_log.entries(customer, after, 100) if access_log is not None else []
        return pages.render(
            request,
            "access.html",
            entries=entries,
            when=views.utc,
            next_after=entries[-1].id if len(entries) == 100 else None,
        )


def _known(fleet: FleetSource) -> Callable[[str], bool]:
    """Whether the fleet store holds a meter (registered, revoked or not)."""
    return lambda meter_id: any(r.meter_id == meter_id for r in fleet.meter_rows())


def create_portal_app(
    bills: StaffArchive,
    authenticator: AccountAuthenticator,
    access_log: AccessLog | None,
    keys: PublishedKeys | None,
    consent: RouterConsent | None = None,
    fleet: FleetSource | None = None,
    clock: Callable[[], float] = time.time,
    meters: MeterRevocation | None = None,
    admin: AdminTools | None = None,
    health: HealthProbe | None = None,
    commands: CommandDesk | None = None,
) -> FastAPI:
    """The bills API with the portal's pages on it (sessions through `authenticator`); the
    customer's apps page reaches the router through `consent` (None: the page says it is not);
    the administrator revokes meters through `meters` and makes the other changes with `admin`
    (None: the pages say they cannot); the operator's services page asks the services `health`
    names; operators and administrators send meter commands through `commands` (None: the
    pages say they cannot)."""
    from meterseal.portal.consent_pages import add_consent_routes  # it imports this module

    authenticator.session_cookie = SESSION_COOKIE
    authenticator.csrf = (CSRF_COOKIE, CSRF_FIELD)
    app = create_billing_app(bills, authenticator, access_log)
    app.title = "meterseal bills and portal"
    add_portal_routes(app, bills, authenticator, access_log, keys)
    render, reads = app.state.portal_pages.render, AccessRecorder(access_log)
    billing_key = keys.billing if keys else None
    add_staff_routes(app, render, bills, reads, billing_key, fleet, clock, meters, admin)
    add_consent_routes(app, app.state.portal_pages, consent)
    add_health_routes(app, render, health, OPERATOR, clock)
    add_supply_routes(app, render, commands, clock, None if fleet is None else _known(fleet))
    return app
