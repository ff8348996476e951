"""The customer's apps page: who receives their data at which level, consent per app.

`GET /portal/apps` lists the router's members that receive data (apps, with the customer's
consent to each; the utility, aggregators and public apps by their role) and `POST
/portal/apps` grants or withdraws one app's consent (CSRF-checked form: `app`, `action`), says
what the app receives from then on, and records the change in the customer's access log.
Whose consent it is comes from the session's identity only; the page says so plainly when
the portal has no router configured or the router does not answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterseal.portal.app import CUSTOMER, _form, _Pages
from meterseal.portal.consent import PartlyChanged, RouterConsent, RouterUnreachable
from meterseal.runtime.auth import Identity, access

NOT_CONNECTED = (
    "This portal is not connected to the router that shares readings with apps "
    "(the operator starts it with `bills serve --router-nats URL --router-keys DIR`)."
)


def add_consent_routes(app: FastAPI, pages: _Pages, consent: RouterConsent | None) -> None:
    """Add the apps page and its consent form."""

    async def show(
        request: Request, identity: Identity, status: int = 200, done: str = "", error: str = ""
    ) -> Response:
        customer = identity.customer_id or ""
        view, problem = None, error
        if consent is None:
            problem, status = NOT_CONNECTED, 503
        else:
            try:
                view = await consent.view(customer)
            except RouterUnreachable as exc:
                problem, status = error or f"Your apps cannot be shown now: {exc}", 503
        return pages.render(request, "apps.html", status, view=view, done=done, problem=problem)

    @app.get("/portal/apps", include_in_schema=False)
    async def apps_page(
        request: Request, identity: Annotated[Identity, access(CUSTOMER)]
    ) -> Response:
        return await show(request, identity)

    # The session signs in this POST only with the form's matching CSRF token (accounts.authn).
    @app.post("/portal/apps", include_in_schema=False)
    async def apps_change(
        request: Request, identity: Annotated[Identity, access(CUSTOMER)]
    ) -> Response:
        form = await _form(request)
        action, name = form.get("action", ""), form.get("app", "")[:64]
        if action not in ("grant", "revoke"):
            return await show(request, identity, 400, error="choose to give or withdraw consent")
        if consent is None:
            return await show(request, identity)
        customer, grant = identity.customer_id or "", action == "grant"
        try:
            done = await consent.change(customer, name, grant)
        except LookupError:
            return await show(request, identity, 404, error=f"no app {name!r} receives data")
        except PartlyChanged as exc:
            meters = ", ".join(exc.done)
            await _record(pages, identity, customer, name, grant, f" (meters {meters} only)")
            return await show(request, identity, 503, error=f"Not finished: {exc}")
        except RouterUnreachable as exc:
            return await show(request, identity, 503, error=f"Nothing changed: {exc}")
        await _record(pages, identity, customer, name, grant, "")
        return await show(request, identity, done=done)


async def _record(
    pages: _Pages, identity: Identity, customer: str, app: str, grant: bool, scope: str
) -> None:
    # The change is the customer's own act on their data: their access log keeps it.
    what = f"consent given to {app}" if grant else f"consent withdrawn from {app}"
    await run_in_threadpool(pages.reads.read, identity, "POST /portal/apps", customer, what + scope)
