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

from fastapi import FastAPI, Request

from meterseal.accounts.changes import ChangeLog
from meterseal.meter.enrolment import Enrolment
from meterseal.portal.admin_cas import add_cas_routes
from meterseal.portal.admin_changes import Recorder, add_change_routes
from meterseal.portal.admin_meters import add_meter_provisioning
from meterseal.portal.admin_render import Render
from meterseal.portal.admin_tariffs import TariffPublisher, add_tariff_publishing
from meterseal.runtime.auth import Rule
from meterseal.trust.admin_client import CasAdmin

SESSION_COOKIE = "ms_session"  # app.SESSION_COOKIE (app imports this module; a test checks)


def session_credential(request: Request) -> str:
    """The signed-in administrator's login token (the session cookie), for the CAS's API."""
    return request.cookies.get(SESSION_COOKIE, "")


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
