"""A meter's supply from the portal and the API: connect or disconnect, confirmed, then logged.

`/portal/meters/{meter_id}/supply` shows the meter's commands (from the command log) and a
form to disconnect or reconnect its load; the POST needs the form to name the same meter and
its confirmation ticked, then issues the command through the head-end's `CommandDesk`
(signed with the operator command key, logged, left in the outbox for the meter's agent).
`/portal/commands` lists the log. The JSON API does the same for programs:
`POST /v1/meters/{meter_id}/commands` and `GET /v1/commands`. Operators and administrators
only (`roles:operator|administrator`), both ways.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Body, FastAPI, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from meterseal.accounts.authn import form_fields
from meterseal.accounts.model import Role
from meterseal.commands.desk import CommandDesk
from meterseal.commands.log import Tracked
from meterseal.commands.model import Action
from meterseal.errors import MetersealError
from meterseal.runtime.auth import AnyRole, access, identity_of

STAFF = AnyRole((Role.OPERATOR.value, Role.ADMINISTRATOR.value))
SUPPLY_ROUTE = "/portal/meters/{meter_id}/supply"
NO_DESK = (
    "this server cannot send meter commands (it was started without the operator command key: "
    "`meterseal command keygen`)"
)
SUPPLY_ACTIONS = {"disconnect": Action.DISCONNECT, "connect": Action.CONNECT}
MeterId = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]


class Render(Protocol):
    """The portal's page renderer."""

    def __call__(
        self, request: Request, name: str, status: int = 200, **context: object
    ) -> Response: ...


class CommandRequest(BaseModel):
    """A command to send: connect, disconnect, set-clock (with `clock`, Unix s) or read."""

    action: Action
    ttl: int = 900
    clock: int | None = None


class CommandView(BaseModel):
    """A logged command as the API shows it."""

    id: str
    meter_id: str
    action: str
    counter: int
    issued_at: int
    expires_at: int
    state: str
    reason: str = ""
    by: str = ""  # who sent it


def _view(tracked: Tracked) -> CommandView:
    c, result = tracked.command, tracked.result
    return CommandView(
        id=c.id, meter_id=c.meter_id, action=c.action.value, counter=c.counter,
        issued_at=c.issued_at, expires_at=c.expires_at, state=tracked.state.value,
        reason="" if result is None else result.reason, by=c.by,
    )  # fmt: skip


def add_supply_routes(
    app: FastAPI,
    render: Render,
    desk: CommandDesk | None,
    clock: Callable[[], float] = time.time,
    known: Callable[[str], bool] | None = None,
) -> None:
    """Add the supply page, the command log page and the command API; `known` says whether
    a meter is registered (None: no fleet to ask, every meter id is taken as it is)."""

    def need_desk() -> CommandDesk:
        if desk is None:
            raise HTTPException(503, NO_DESK)
        return desk

    def need_meter(meter_id: str) -> None:
        if known is not None and not known(meter_id):
            raise HTTPException(404, f"no meter {meter_id!r}")

    def commands_of(meter_id: str | None) -> list[Tracked]:
        if desk is None:
            return []
        report = desk.report(meter_id)
        return list(report.commands.values())

    def page(
        request: Request, meter_id: str, status: int = 200, problem: str = "", done: str = ""
    ) -> Response:
        return render(
            request, "staff/supply.html", status, meter_id=meter_id, problem=problem, done=done,
            commands=commands_of(meter_id), changeable=desk is not None, no_desk=NO_DESK,
        )  # fmt: skip

    @app.get(SUPPLY_ROUTE, include_in_schema=False, dependencies=[access(STAFF)])
    async def supply(request: Request, meter_id: MeterId) -> Response:
        await run_in_threadpool(need_meter, meter_id)
        return await run_in_threadpool(page, request, meter_id)

    @app.post(SUPPLY_ROUTE, include_in_schema=False, dependencies=[access(STAFF)])
    async def send(request: Request, meter_id: MeterId) -> Response:
        # The session reached here with the form's CSRF token (accounts.authn); the form names
        # the meter too, so a form for one meter never acts on another.
        form = await form_fields(request)
        await run_in_threadpool(need_meter, meter_id)
        action = SUPPLY_ACTIONS.get(form.get("action", ""))
        if form.get("meter") != meter_id or action is None:
            return page(request, meter_id, 400, problem="the form names another meter or action")
        if form.get("confirm") != "yes":
            return page(request, meter_id, 400, problem="tick the confirmation to send it")
        sending, by = need_desk(), identity_of(request).subject or ""
        try:
            issued = await run_in_threadpool(
                lambda: sending.issue(meter_id, action, clock(), by=by)
            )
        except MetersealError as exc:
            return page(request, meter_id, 503, problem=f"not sent: {exc.diagnostics()}")
        return page(request, meter_id, done=f"{issued.command.id} {action.value} issued")

    @app.get("/portal/commands", include_in_schema=False, dependencies=[access(STAFF)])
    async def command_log(request: Request) -> Response:
        def listing() -> Response:
            entries = desk.log.entries() if desk is not None else []
            newest = entries[-1].digest.hex() if entries else ""
            problems = desk.report().problems if desk is not None else []
            return render(
                request, "staff/commands.html", commands=commands_of(None),
                newest=newest, problems=problems, changeable=desk is not None, no_desk=NO_DESK,
            )  # fmt: skip

        return await run_in_threadpool(listing)

    @app.post(
        "/v1/meters/{meter_id}/commands",
        summary="Send a signed command to a meter",
        description="Signs the command with the operator command key, logs it and leaves it "
        "for the meter's agent. 201 with the command's id (METER#COUNTER); 404 for a meter "
        "the fleet does not hold; 503 when this server cannot sign or log commands.",
        status_code=201,
        response_model=CommandView,
        dependencies=[access(STAFF)],
    )
    async def post_command(
        request: Request, meter_id: MeterId, body: Annotated[CommandRequest, Body()]
    ) -> CommandView:
        if (body.action is Action.SET_CLOCK) != (body.clock is not None):
            raise HTTPException(422, "set-clock, and only set-clock, takes clock")
        if not 1 <= body.ttl <= 86_400:
            raise HTTPException(422, "ttl is 1 to 86400 seconds")
        await run_in_threadpool(need_meter, meter_id)
        sending, by = need_desk(), identity_of(request).subject or ""
        try:
            issued = await run_in_threadpool(
                lambda: sending.issue(meter_id, body.action, clock(), body.ttl, body.clock, by)
            )
        except MetersealError as exc:
            raise HTTPException(503, f"not sent: {exc.diagnostics()}") from exc
        tracked = await run_in_threadpool(
            lambda: next(t for t in commands_of(meter_id) if t.command == issued.command)
        )
        return _view(tracked)

    @app.get(
        "/v1/commands",
        summary="The command log's commands and their states",
        response_model=list[CommandView],
        dependencies=[access(STAFF)],
    )
    async def get_commands(meter: str | None = None) -> list[CommandView]:
        found: list[Any] = await run_in_threadpool(commands_of, meter)
        return [_view(t) for t in found]
