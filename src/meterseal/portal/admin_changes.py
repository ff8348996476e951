"""The administrators' change log in the portal: recording each change, and its page.

Every change an administrator makes or attempts through the portal is recorded through a
`Recorder` (who, roles, when, action, object, outcome, detail) into the store's hash-chained
log (`accounts.changes`). A change to the log's own store (a meter provisioned or revoked, a
tariff published) is made and recorded in one transaction (`Recorder.make`): if the entry
cannot be written the change is rolled back, and the reverse. A change made elsewhere (the
CAS's, over its HTTP API) is recorded after the CAS answered, and stands unrecorded if the
recording then fails; `/portal/admin/changes` (`role:administrator`) lists the newest
entries with the chain's check over the whole log and its newest digest.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from meterseal.accounts.changes import DONE, Change, ChangeLog, ChangeRequest, check_chain
from meterseal.portal.admin_render import Render
from meterseal.runtime.auth import Identity, Rule, access

CHANGES_SHOWN = 200
T = TypeVar("T")
Entry = tuple[str, str, str]  # a change's (object id, outcome, detail) in the log
NO_LOG = "this portal keeps no change log (it was started without a writable store)"


@dataclass
class Recorder:
    """Records administrators' changes into `log` (None: nothing is recorded)."""

    log: ChangeLog | None
    clock: Callable[[], float] = time.time

    def record(
        self, identity: Identity, action: str, object_id: str, outcome: str, detail: str = ""
    ) -> None:
        """Record one change or attempt (outcome "done" or the reason it was refused)."""
        if self.log is None:
            return
        roles = ",".join(sorted(identity.roles))
        request = ChangeRequest(
            self.clock(), identity.subject or "", roles, action, object_id[:256], outcome, detail
        )
        self.log.record(request)

    def make(
        self, identity: Identity, action: str, change: Callable[[], T], entry: Callable[[T], Entry]
    ) -> T:
        """Make `change` and record its `entry` (object, outcome, detail) in one transaction
        when the change is to the log's own store: both stand, or neither (module doc)."""
        if self.log is None:
            return change()
        with self.log.together():
            made = change()
            self.record(identity, action, *entry(made))
        return made

    async def made(
        self, identity: Identity, action: str, change: Callable[[], T], entry: Callable[[T], Entry]
    ) -> T:
        """`make` off the event loop."""
        return await run_in_threadpool(self.make, identity, action, change, entry)

    async def done(self, identity: Identity, action: str, object_id: str, detail: str = "") -> None:
        """Record a change that took effect (off the event loop)."""
        await run_in_threadpool(self.record, identity, action, object_id, DONE, detail)

    async def refused(
        self, identity: Identity, action: str, object_id: str, reason: str, detail: str = ""
    ) -> None:
        """Record an attempt refused with `reason` (off the event loop)."""
        await run_in_threadpool(
            self.record, identity, action, object_id, f"refused: {reason}", detail
        )


@dataclass(frozen=True)
class ChangeLine:
    """One change as the page shows it."""

    change: Change
    at: dt.datetime


def add_change_routes(app: FastAPI, render: Render, recorder: Recorder, rule: Rule) -> None:
    """Add `/portal/admin/changes`, the change log's page."""

    @app.get("/portal/admin/changes", include_in_schema=False, dependencies=[access(rule)])
    def change_log(request: Request) -> Response:
        log = recorder.log
        changes = [] if log is None else log.changes()
        problems = check_chain(changes)
        lines = [
            ChangeLine(c, dt.datetime.fromtimestamp(c.request.at, dt.UTC))
            for c in reversed(changes[-CHANGES_SHOWN:])
        ]
        head = changes[-1].digest.hex() if changes else ""
        return render(
            request,
            "staff/admin_changes.html",
            lines=lines,
            total=len(changes),
            problems=problems,
            head=head,
            kept=log is not None,
            no_log=NO_LOG,
        )
