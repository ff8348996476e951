"""The runtime's `Authenticator` over accounts: login tokens and API keys, rate-limited.

A request names its caller with `Authorization: Bearer CREDENTIAL`, where the credential is a
login token (from `POST /v1/auth/token`) or an API key (`msk_…`). No header: anonymous, which
only public routes let through. A credential that is wrong in any way (unknown, expired,
tampered, revoked, signed out, a disabled account) is 401 with one body, and counts as a
failure of its source; a source or account backing off, or spending requests too fast, gets
429 with Retry-After. The account is read on every request, so disabling it ends its tokens
and keys. Signing out (`sign_out`) revokes a login token server-side: its id goes to the
accounts' revocation list (`revoke_token`), which every use of a token checks, until the token
would have expired anyway.

A browser's session (the portal) is a login token in a cookie. On GET and HEAD it signs the
request in; on any other method it does so only together with a CSRF token: the urlencoded
form's `csrf_field` must equal the `csrf_cookie` (double submit, which a page of another
origin cannot read). A cookie sent on such a request without a matching token is refused
(403, `CSRF_REFUSED`) whatever route it is for, so no handler reads the cookie itself.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from meterseal.accounts.credentials import (
    TokenSigner,
    digests_match,
    password_matches,
    split_api_key,
)
from meterseal.accounts.model import AccountRepository, Role
from meterseal.accounts.throttle import Throttle
from meterseal.runtime.auth import ANONYMOUS, CHALLENGE, UNAUTHENTICATED, Identity
from meterseal.runtime.body_cap import body_deadline
from meterseal.runtime.connections import source_key

TOO_MANY = "too many attempts; retry later"
LOGIN_FAILED = "wrong account name or password"
CSRF_REFUSED = "the form expired; reload it"
SAFE_METHODS = ("GET", "HEAD")
MAX_FORM = 4096  # bytes of a portal form: a CSRF token and a few short fields
MAX_FORM_FIELDS = 16  # fields of a portal form (the largest, provisioning a meter, has 7)
TOO_MANY_FIELDS = f"too many form fields (at most {MAX_FORM_FIELDS})"
FORM_LIMITS = "form_limits"  # app.state's {route path: bytes} for forms allowed more than MAX_FORM


def refused() -> HTTPException:
    """The one answer to credentials that do not prove anything."""
    return HTTPException(401, UNAUTHENTICATED, headers=CHALLENGE)


def too_many(wait: float) -> HTTPException:
    """The one answer to a caller that must wait `wait` seconds."""
    return HTTPException(429, TOO_MANY, headers={"Retry-After": str(max(1, math.ceil(wait)))})


def allow_larger_form(app: FastAPI, path: str, limit: int) -> None:
    """Let the urlencoded forms POSTed to the route `path` of `app` be up to `limit` bytes."""
    limits: dict[str, int] = getattr(app.state, FORM_LIMITS, {})
    limits[path] = limit
    setattr(app.state, FORM_LIMITS, limits)


def form_limit(request: Request) -> int:
    """The largest urlencoded form a request's route takes, in bytes (MAX_FORM unless allowed)."""
    limits: dict[str, int] = getattr(request.app.state, FORM_LIMITS, {})
    route = request.scope.get("route")
    return limits.get(getattr(route, "path", request.url.path), MAX_FORM)


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (first value each); 413 beyond the route's form limit (MAX_FORM
    bytes unless `allow_larger_form`), 400 beyond MAX_FORM_FIELDS fields."""
    body = await _form_body(request, form_limit(request))
    try:
        fields = parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError:  # "Max number of fields exceeded"
        raise HTTPException(400, TOO_MANY_FIELDS) from None
    return {k: v[0] for k, v in fields.items()}


async def _form_body(request: Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes (a chunked one has no length to check
    first) and for no longer than a parsed body of that size may take (408); kept in the
    request's state, where the authenticator's CSRF check and then the handler read it."""
    kept: bytes | None = getattr(request.state, "form_body", None)
    if kept is not None:
        return kept
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, "form too large")
    pieces, size = [], 0
    try:
        async with asyncio.timeout_at(body_deadline(limit)):  # a form stopped short: let go
            async for piece in request.stream():
                size += len(piece)
                if size > limit:
                    raise HTTPException(413, "form too large")
                pieces.append(piece)
    except TimeoutError:
        raise HTTPException(408, "form not received in time") from None
    request.state.form_body = body = b"".join(pieces)
    return body


def csrf_matches(request: Request, form: dict[str, str], cookie: str, field: str) -> bool:
    """Whether the form's `field` equals the non-empty `cookie` (compared in constant time)."""
    kept, sent = request.cookies.get(cookie, ""), form.get(field, "")
    return bool(kept) and hmac.compare_digest(kept.encode(), sent.encode())


def request_source(request: Request) -> str:
    """The key a request's source counts under: its peer address (IPv6 by /64)."""
    host = request.client.host if request.client else "unknown"
    return f"source:{source_key(host)}"


class AccountAuthenticator:
    """Who a request comes from, by its login token or API key; the login itself."""

    def __init__(
        self,
        accounts: AccountRepository,
        signer: TokenSigner,
        throttle: Throttle | None = None,
        clock: Callable[[], float] = time.time,
        session_cookie: str | None = None,
        csrf: tuple[str, str] | None = None,
    ) -> None:
        self.accounts = accounts
        self.signer = signer
        self.throttle = throttle or Throttle()
        self.clock = clock
        # The portal's sign-in cookie (a login token) and its CSRF (cookie, form field) pair:
        # on unsafe methods the session counts only with a matching token (module doc).
        self.session_cookie = session_cookie
        self.csrf = csrf

    async def __call__(self, request: Request) -> Identity:
        """The caller's identity (anonymous without credentials); 401/429 as above."""
        header = request.headers.get("authorization")
        if header is None:
            return await self._from_cookie(request)
        source, now = request_source(request), self.clock()
        wait = self.throttle.retry_after([source], now)
        if wait > 0:
            raise too_many(wait)
        scheme, _, credential = header.strip().partition(" ")
        identity = None
        if scheme.lower() == "bearer" and 0 < len(credential) <= 4096:
            identity = await run_in_threadpool(self.identify, credential.strip(), now)
        if identity is None:
            self.throttle.failed([source], now)
            raise refused()
        for key in (source, f"account:{identity.subject}"):
            if not self.throttle.spend(key, now):
                raise too_many(1.0)
        return identity

    async def _from_cookie(self, request: Request) -> Identity:
        # A session cookie that proves nothing (expired, from an old key) is no sign-in:
        # anonymous, so the portal sends the browser to its sign-in page.
        cookie = self.session_cookie
        token = request.cookies.get(cookie) if cookie else None
        if token is None or len(token) > 4096:
            return ANONYMOUS
        if request.method not in SAFE_METHODS and not await self._csrf_holds(request):
            raise HTTPException(403, CSRF_REFUSED)
        source, now = request_source(request), self.clock()
        identity = await run_in_threadpool(self._from_token, token, now)
        if identity is None:
            return ANONYMOUS
        for key in (source, f"account:{identity.subject}"):
            if not self.throttle.spend(key, now):
                raise too_many(1.0)
        return identity

    async def _csrf_holds(self, request: Request) -> bool:
        if self.csrf is None:  # no CSRF pair configured: the cookie never acts on a POST
            return False
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return False
        return csrf_matches(request, await form_fields(request), *self.csrf)

    def _from_token(self, token: str, now: float) -> Identity | None:
        claims = self.signer.claims(token, now)
        if claims is None or self.accounts.token_revoked(claims.token_id):
            return None
        return self._identity(claims.subject, None)

    def sign_out(self, token: str) -> bool:
        """Revoke a valid login token server-side (it proves nothing from now on); False when
        it proved nothing already (expired, tampered, revoked)."""
        now = self.clock()
        claims = self.signer.claims(token, now)
        if claims is None or self.accounts.token_revoked(claims.token_id):
            return False
        self.accounts.revoke_token(claims.token_id, claims.subject, claims.expires, now)
        return True

    def identify(self, credential: str, now: float) -> Identity | None:
        """The identity a credential proves, None if it proves nothing."""
        split = split_api_key(credential)
        if split is not None:
            key = self.accounts.api_key(split[0])
            if key is None or key.revoked_at is not None or not digests_match(key.digest, split[1]):
                return None
            return self._identity(key.username, key.scopes)
        return self._from_token(credential, now)

    def _identity(self, username: str, scopes: frozenset[Role] | None) -> Identity | None:
        account = self.accounts.account(username)
        if account is None or not account.enabled:
            return None
        roles = account.roles if scopes is None else account.roles & scopes
        return Identity(username, frozenset(str(r) for r in roles), account.customer_id)

    def login(self, username: str, password: str, source: str) -> str:
        """A token for a correct name and password; 401 otherwise, 429 while backing off."""
        now = self.clock()
        keys = [source, f"account:{username}"]
        wait = self.throttle.retry_after(keys, now)
        if wait > 0:
            raise too_many(wait)
        account = self.accounts.account(username)
        proven = password_matches(account.password_hash if account else None, password)
        if account is None or not proven or not account.enabled:
            self.throttle.failed(keys, now)
            raise HTTPException(401, LOGIN_FAILED, headers=CHALLENGE)
        self.throttle.succeeded(keys[1])
        return self.signer.issue(username, now)
