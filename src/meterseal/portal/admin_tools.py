"""What the administrator's pages change things with, and the routes that use them.

`AdminTools` is given to `create_portal_app(admin=…)` by `bills serve` and `demo --serve`:
the change log (the store's), meter enrolment (the deployment CA's key and a writable store),
tariff publishing (a writable bill store) and the CAS's HTTP API. Each absent tool leaves its
page saying it cannot change anything. Every route here is `role:administrator`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request

from meterseal.accounts.changes import ChangeLog
from meterseal.errors import MetersealError
from meterseal.meter.enrolment import Enrolment, manufacturer_cas
from meterseal.portal.admin_cas import add_cas_routes
from meterseal.portal.admin_changes import Recorder, add_change_routes
from meterseal.portal.admin_meters import add_meter_provisioning
from meterseal.portal.admin_render import Render
from meterseal.portal.admin_tariffs import TariffPublisher, add_tariff_publishing
from meterseal.runtime.auth import Rule
from meterseal.storage import Store
from meterseal.trust.admin_client import CasAdmin

SESSION_COOKIE = "ms_session"  # app.SESSION_COOKIE (app imports this module; a test checks)


def session_credential(request: Request) -> str:
    """The administrator's own credential for the CAS's API: the session cookie's login token,
    or the request's bearer token or API key."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    fallback = bearer.strip() if scheme.lower() == "bearer" else ""
    return request.cookies.get(SESSION_COOKIE) or fallback


@dataclass
class AdminTools:
    """Where the administrator's changes are made and recorded (None: that change is off)."""

    changes: ChangeLog | None = None
    enrolment: Enrolment | None = None
    tariffs: TariffPublisher | None = None
    cas: CasAdmin | None = None
    credential: Callable[[Request], str] = field(default=session_credential)


def add_admin_tools(
    app: FastAPI,
    render: Render,
    tools: AdminTools,
    rule: Rule,
    clock: Callable[[], float] = time.time,
) -> Recorder:
    """Add the change log page and the provisioning, tariff and CAS pages; the recorder."""
    recorder = Recorder(tools.changes, clock)
    add_change_routes(app, render, recorder, rule)
    add_meter_provisioning(app, render, tools.enrolment, recorder, rule)
    add_tariff_publishing(app, render, tools.tariffs, recorder, rule)
    add_cas_routes(app, render, tools.cas, tools.credential, recorder, rule)
    return recorder


def deployment_tools(
    deployment_dir: Path, store: Store, cas_url: str | None, passphrase: bytes | None
) -> tuple[AdminTools, list[str]]:
    """The tools of a deployment (its CA key, `store` writable, the CAS at `cas_url`), and
    a warning for each one it cannot give (that page then says it cannot change anything)."""
    from meterseal.deployment import load_ca_certificate, load_deployment
    from meterseal.runtime.tls import client_context
    from meterseal.storage.admin_changes import ChangeStore
    from meterseal.storage.bill_store import BillStore

    warnings, enrolment, cas = [], None, None
    try:
        deployment = load_deployment(deployment_dir, passphrase)
        enrolment = Enrolment(
            deployment.ca_key, deployment.ca_cert, store, deployment_dir,
            manufacturer_cas(deployment_dir),
        )  # fmt: skip
    except MetersealError as exc:
        warnings.append(f"the portal cannot provision meters: {exc.diagnostics()}")
    if cas_url:
        https = cas_url.startswith("https:")
        verify = client_context(load_ca_certificate(deployment_dir)) if https else None
        cas = CasAdmin(cas_url, verify)
    else:
        warnings.append("the portal reaches no CAS (--cas URL): its CAS pages say so")
    tools = AdminTools(ChangeStore(store), enrolment, BillStore(store), cas)
    return tools, warnings
