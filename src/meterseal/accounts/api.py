"""Sign-in and the access log over HTTP, added to an app that serves people's data.

* `POST /v1/auth/token`: JSON {"username", "password"} -> {"access_token", "token_type",
  "expires_at"}; 401 (one body for every wrong name, password or disabled account), 429 with
  Retry-After while the source or account backs off.
* `GET /v1/auth/whoami`: the caller's account name, roles and customer id.
* `GET /v1/access-log`: who read which customer's data; an auditor sees every entry (or one
  customer's, `?customer=`), a customer only their own.

`AccessRecorder` is what the data routes call to record a read.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from meterseal.accounts.authn import AccountAuthenticator, request_source
from meterseal.accounts.model import AccessEntry, AccessLog, Role
from meterseal.runtime.auth import PUBLIC, AnyRole, Identity, access

EVERY_ROLE = AnyRole(tuple(r.value for r in Role))
READS_ACCESS_LOG = AnyRole((Role.CUSTOMER.value, Role.AUDITOR.value))


class Login(BaseModel):
    """An account name and its password."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenView(BaseModel):
    """A login token: send it as `Authorization: Bearer TOKEN` until `expires_at`."""

    access_token: str
    token_type: str
    expires_at: int


class WhoAmI(BaseModel):
    """The caller as the API sees it."""

    username: str
    roles: list[str]
    customer_id: str | None


class AccessView(BaseModel):
    """One read of a customer's data."""

    id: int
    at: float
    subject: str
    roles: str
    route: str
    customer_id: str
    object_id: str


class AccessLogView(BaseModel):
    """Access-log entries, oldest first; page on with `after` = the last id."""

    entries: list[AccessView]


class AccessRecorder:
    """Records who read which customer's data (a no-op without an access log)."""

    def __init__(self, log: AccessLog | None, clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.clock = clock

    def read(self, identity: Identity, route: str, customer_id: str, object_id: str) -> None:
        """Record that `identity` read `object_id` of `customer_id` through `route`."""
        if self.log is None or identity.subject is None:
            return
        roles = ",".join(sorted(identity.roles))
        entry = AccessEntry(self.clock(), identity.subject, roles, route, customer_id, object_id)
        self.log.record([entry])


def add_account_routes(
    app: FastAPI, authenticator: AccountAuthenticator, access_log: AccessLog | None
) -> None:
    """Install `authenticator` on `app`; add sign-in, whoami and (with a log) the access log."""
    app.state.authenticator = authenticator

    @app.post(
        "/v1/auth/token", summary="Sign in", response_model=TokenView, dependencies=[access(PUBLIC)]
    )
    async def token(login: Login, request: Request) -> TokenView:
        # argon2 takes a fraction of a second of CPU: off the event loop.
        issued = await run_in_threadpool(
            authenticator.login, login.username, login.password, request_source(request)
        )
        expires = int(authenticator.clock() + authenticator.signer.ttl)
        return TokenView(access_token=issued, token_type="bearer", expires_at=expires)  # noqa: S106

    @app.get("/v1/auth/whoami", summary="Who the caller is", response_model=WhoAmI)
    async def whoami(identity: Annotated[Identity, access(EVERY_ROLE)]) -> WhoAmI:
        return WhoAmI(
            username=identity.subject or "",
            roles=sorted(identity.roles),
            customer_id=identity.customer_id,
        )

    if access_log is None:
        return

    @app.get("/v1/access-log", summary="Who read which customer's data")
    def access_entries(
        identity: Annotated[Identity, access(READS_ACCESS_LOG)],
        customer: Annotated[str | None, Query(max_length=64)] = None,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AccessLogView:
        if Role.AUDITOR.value not in identity.roles:
            customer = identity.customer_id or ""  # a customer sees their own, whatever asked
        found = access_log.entries(customer, after, limit)
        return AccessLogView(entries=[AccessView(**dataclasses.asdict(e)) for e in found])
