"""Where authentication and authorization plug in: every route declares one access rule.

A route declares its rule where it is declared, as a dependency:
`@app.get("/x", dependencies=[access(PUBLIC)])`, or `identity: Identity = access(rule)` as a
parameter when the handler needs to know who asked. Deny by default: `check_access(app)`
(which `HttpServer.start` runs) refuses an app with a route that declares no rule, or more
than one. Per request, the app's `Authenticator` (`app.state.authenticator`, anonymous
unless one is installed) says who is asking and the rule decides; a refusal is 401 for an
anonymous caller and 403 for a known one, without saying which rule refused.

Today no caller is authenticated, so every rule in use lets everyone through and the rules
say honestly why: `PUBLIC` (health, metrics, counters, OpenAPI), `PROVEN_BY_BODY` (the body
carries its own proof, checked by the handler: sealed packets, attestation quotes) and
`NOT_YET_PROTECTED` (data served without authentication until identities exist; keep such
services on a trusted network). Role rules (`HasRole`) and object-level rules (a `Rule` reads
the request's path parameters) are declared the same way, and token or OIDC authentication
is an `Authenticator`.
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
    """Who made a request: a subject (None when anonymous) and the roles it holds."""

    subject: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)

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


PUBLIC = Everyone("public", "public by design: health, metrics, counters, the API description")
PROVEN_BY_BODY = Everyone(
    "proven-by-body", "anyone may send; the body proves itself and the handler checks the proof"
)
NOT_YET_PROTECTED = Everyone(
    "not-yet-protected", "data served without authentication until identities exist"
)


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
                raise HTTPException(401, "authentication required")
            raise HTTPException(403, "not allowed")
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
