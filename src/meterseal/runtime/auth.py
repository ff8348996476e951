"""Where authentication and authorization plug in: every route declares one access rule.

A route declares its rule where it is declared, as a dependency:
`@app.get("/x", dependencies=[access(PUBLIC)])`, or `identity: Identity = access(rule)` as a
parameter when the handler needs to know who asked. Deny by default: `check_access(app)`
(which `HttpServer.start` runs) refuses an app with a route that declares no rule, or more
than one. Per request, the app's `Authenticator` (`app.state.authenticator`, anonymous
unless one is installed) says who is asking and the rule decides; a refusal is 401 for an
anonymous caller and 403 for a known one, without saying which rule refused.

Two rules let everyone through and say why: `PUBLIC` (health, metrics, counters, OpenAPI,
the bill log's heads) and `PROVEN_BY_BODY` (the body carries its own proof, checked by the
handler: sealed packets, attestation quotes). Every other route names the roles it serves
(`HasRole`, `AnyRole`); which objects a role may see is the handler's check, from the
`Identity` (a customer's `customer_id`), never from the URL. Password tokens and API keys are
one `Authenticator` (meterseal.accounts); OIDC would be another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute

from meterseal.errors import ConfigurationError


@dataclass(frozen=True)
class Identity:
    """Who made a request: a subject (None when anonymous), its roles, a customer's id."""

    subject: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    customer_id: str | None = None  # set for a customer: the only customer whose data it sees

    @property
    def authenticated(self) -> bool:
        """Whether an authenticator vouched for the subject."""
        return self.subject is not None


ANONYMOUS = Identity()
# Async so that token checks (a key set fetched over HTTP, say) can await without a thread.
Authenticator = Callable[[Request], Awaitable[Identity]]


async def anonymous(_request: Request) -> Identity:
    """The authenticator of an app that has none yet: everyone is anonymous."""
    return ANONYMOUS


class Rule(Protocol):
    """Whether an identity may make a request (the request gives object-level rules the ids)."""

    @property
    def name(self) -> str:
        """The rule's name, for the route table and messages."""
        ...

    def allows(self, identity: Identity, request: Request) -> bool:
        """True if `identity` may make `request`."""
        ...


@dataclass(frozen=True)
class Everyone:
    """Lets every caller through; its name says why that is right (or not yet wrong)."""

    name: str
    why: str

    def allows(self, identity: Identity, request: Request) -> bool:
        """Always."""
        return True


@dataclass(frozen=True)
class HasRole:
    """Lets through an authenticated caller holding `role`."""

    role: str

    @property
    def name(self) -> str:
        """role:ROLE."""
        return f"role:{self.role}"

    def allows(self, identity: Identity, request: Request) -> bool:
        """The caller is authenticated and holds the role."""
        return identity.authenticated and self.role in identity.roles


@dataclass(frozen=True)
class AnyRole:
    """Lets through an authenticated caller holding at least one of `roles`."""

    roles: tuple[str, ...]

    @property
    def name(self) -> str:
        """roles:A|B."""
        return "roles:" + "|".join(self.roles)

    def allows(self, identity: Identity, request: Request) -> bool:
        """The caller is authenticated and holds one of the roles."""
        return identity.authenticated and not identity.roles.isdisjoint(self.roles)


PUBLIC = Everyone("public", "public by design: health, metrics, counters, the API description")
PROVEN_BY_BODY = Everyone(
    "proven-by-body", "anyone may send; the body proves itself and the handler checks the proof"
)
# One body for every refusal of credentials: a caller learns nothing about which part failed.
UNAUTHENTICATED = "authentication required"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


class AccessGuard:
    """The dependency that enforces one route's rule (and marks the route as declared)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    async def __call__(self, request: Request) -> Identity:
        """The caller's identity if the rule allows the request; 401/403 otherwise."""
        # Async, so FastAPI calls it in the event loop rather than hopping to a thread.
        authenticate: Authenticator = getattr(request.app.state, "authenticator", anonymous)
        identity = await authenticate(request)
        if not self.rule.allows(identity, request):
            if not identity.authenticated:
                raise HTTPException(401, UNAUTHENTICATED, headers=CHALLENGE)
            raise HTTPException(403, "not allowed")
        request.state.identity = identity  # for handlers declared with `dependencies=`
        return identity


def identity_of(request: Request) -> Identity:
    """The identity the route's guard let through (anonymous if it declared none)."""
    identity = getattr(request.state, "identity", ANONYMOUS)
    assert isinstance(identity, Identity)
    return identity


def access(rule: Rule) -> Any:
    """Declare a route's access rule: `dependencies=[access(rule)]` or a parameter default."""
    return Depends(AccessGuard(rule))


class UndeclaredAccess(ConfigurationError):
    """An app has a route without exactly one access rule: it must not start."""


def _framework_paths(app: FastAPI) -> set[str]:
    # FastAPI's own routes: the API description and its viewers, public by design.
    urls = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    return {url for url in urls if url}


def route_rules(app: FastAPI) -> dict[str, list[str]]:
    """'METHODS path' -> the names of the rules its guards declare, for every route."""
    table: dict[str, list[str]] = {}
    framework = _framework_paths(app)
    for route in app.routes:
        path = getattr(route, "path", repr(route))
        methods = ",".join(sorted(getattr(route, "methods", None) or ()))
        if not isinstance(route, APIRoute):
            table[f"{methods} {path}"] = [PUBLIC.name] if path in framework else []
            continue
        guards = [d.call for d in route.dependant.dependencies if isinstance(d.call, AccessGuard)]
        table[f"{methods} {path}"] = [guard.rule.name for guard in guards]
    return table


def check_access(app: FastAPI) -> None:
    """UndeclaredAccess unless every route of `app` declares exactly one access rule."""
    wrong = [
        f"{route} ({len(rules)} rules)"
        for route, rules in route_rules(app).items()
        if len(rules) != 1
    ]
    if wrong:
        raise UndeclaredAccess(
            f"{app.title}: every route declares one access rule; these do not: "
            + ", ".join(sorted(wrong))
        )
