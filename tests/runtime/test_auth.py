"""The auth plug point: one access rule per route, deny by default, 401/403 by the rule."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Request

from meterseal.runtime.auth import (
    ANONYMOUS,
    PUBLIC,
    AnyRole,
    HasRole,
    Identity,
    UndeclaredAccess,
    access,
    check_access,
    route_rules,
)
from meterseal.runtime.http import HttpServer, service_app
from meterseal.runtime.lifecycle import Lifecycle, admin_app
from meterseal.runtime.metrics import ServiceMetrics
from meterseal.runtime.readiness import Readiness


def _app() -> FastAPI:
    return service_app("probe", "A probe.", Counter(), dict)


@dataclass(frozen=True)
class OwnCustomer:
    """An object-level rule: the caller may read only its own customer's data."""

    name: str = "own-customer"

    def allows(self, identity: Identity, request: Request) -> bool:
        return identity.subject == request.path_params.get("customer_id")


def _token_authenticator(tokens: dict[str, Identity]) -> object:
    async def authenticate(request: Request) -> Identity:
        return tokens.get(request.headers.get("authorization", ""), ANONYMOUS)

    return authenticate


def _get(app: FastAPI, path: str, token: str = "") -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get(path, headers={"authorization": token} if token else {})

    return asyncio.run(call())


def test_an_app_with_a_route_that_declares_no_rule_refuses_to_start() -> None:
    app = _app()

    @app.get("/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(UndeclaredAccess, match=r"GET /v1/forgotten \(0 rules\)"):
        asyncio.run(HttpServer(app).start("127.0.0.1", 0))


def test_a_route_with_two_rules_refuses_to_start_too() -> None:
    app = _app()

    @app.get("/v1/twice", dependencies=[access(PUBLIC), access(HasRole("auditor"))])
    async def twice() -> dict[str, str]:
        return {}

    with pytest.raises(UndeclaredAccess, match=r"GET /v1/twice \(2 rules\)"):
        check_access(app)


class Idle:
    """A stage that does nothing (only its admin app is looked at)."""

    name = "idle"

    def __init__(self) -> None:
        self.metrics = ServiceMetrics(self.name)
        self.readiness = Readiness()

    async def start(self) -> dict[str, str]:
        return {}

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def stop(self) -> None:
        return None

    def counters(self) -> dict[str, int]:
        return {}


def test_the_admin_app_declares_a_rule_on_every_route() -> None:
    admin = admin_app(Idle(), Lifecycle())
    check_access(admin)
    rules = route_rules(admin)
    assert rules["GET /readyz"] == rules["GET /metrics"] == rules["GET /healthz"] == ["public"]
    assert rules["GET,HEAD /openapi.json"] == ["public"]


def test_a_role_rule_refuses_anonymous_callers_401_and_others_403() -> None:
    app = _app()
    app.state.authenticator = _token_authenticator(
        {"t-auditor": Identity("auditor-1", frozenset({"auditor"})), "t-other": Identity("x")}
    )

    @app.get("/v1/audit", dependencies=[access(HasRole("auditor"))])
    async def audit() -> dict[str, str]:
        return {"ok": "yes"}

    check_access(app)
    assert _get(app, "/v1/audit").status_code == 401
    assert _get(app, "/v1/audit", "t-other").status_code == 403
    assert _get(app, "/v1/audit", "t-auditor").json() == {"ok": "yes"}
    assert _get(app, "/healthz").status_code == 200  # public needs no token


def test_an_object_level_rule_is_declared_the_same_way_and_gives_the_identity() -> None:
    app = _app()
    app.state.authenticator = _token_authenticator({"t-c1": Identity("C1")})

    @app.get("/v1/customers/{customer_id}/bills")
    async def bills(
        customer_id: str, identity: Annotated[Identity, access(OwnCustomer())]
    ) -> dict[str, str | None]:
        return {"customer": customer_id, "asked_by": identity.subject}

    check_access(app)
    assert _get(app, "/v1/customers/C1/bills", "t-c1").json() == {
        "customer": "C1",
        "asked_by": "C1",
    }
    assert _get(app, "/v1/customers/C2/bills", "t-c1").status_code == 403
    assert _get(app, "/v1/customers/C1/bills").status_code == 401


def test_the_open_rule_lets_everyone_through_and_says_so() -> None:
    app = _app()

    @app.get("/v1/heads", dependencies=[access(PUBLIC)])
    async def heads() -> dict[str, str]:
        return {"data": "open"}

    assert _get(app, "/v1/heads").json() == {"data": "open"}
    assert route_rules(app)["GET /v1/heads"] == ["public"]


def test_any_role_lets_through_a_holder_of_one_of_its_roles() -> None:
    app = _app()
    app.state.authenticator = _token_authenticator(
        {
            "t-auditor": Identity("a", frozenset({"auditor"})),
            "t-admin": Identity("b", frozenset({"administrator"})),
            "t-customer": Identity("c", frozenset({"customer"}), "C1"),
        }
    )

    @app.get("/v1/log", dependencies=[access(AnyRole(("auditor", "administrator")))])
    async def log() -> dict[str, str]:
        return {}

    assert route_rules(app)["GET /v1/log"] == ["roles:auditor|administrator"]
    assert _get(app, "/v1/log", "t-auditor").status_code == 200
    assert _get(app, "/v1/log", "t-admin").status_code == 200
    assert _get(app, "/v1/log", "t-customer").status_code == 403
    refused = _get(app, "/v1/log")
    assert (refused.status_code, refused.headers["www-authenticate"]) == (401, "Bearer")
