"""Who may call the KVS gateway: its API keys as the runtime's Authenticator and access rules.

A request names its key with `Authorization: Bearer kvk_…`. No header is anonymous, which only
the public routes let through; a key that proves nothing (malformed, unknown, wrong secret,
revoked) is 401 with the runtime's one body (`UNAUTHENTICATED`), and counts as a failure of
its source, which backs off (429) after a few (`accounts.throttle`). A known key outside its
scope is 403 with one body whatever the reason (other bucket, other prefix, missing right),
checked before the object is looked up, so a refusal says nothing about what exists.

The rules (`KvsAccess`) read the bucket and object key from the route's path parameters and
the key's scope from the request, put there by `KvsAuthenticator`: a request that reaches a
rule without a scope is refused (fail closed). When the key table cannot be used (the
storage nodes served a rolled-back one, or none is readable), every keyed request is 503
`KEYS_UNAVAILABLE` and the operator's log says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from meterseal.accounts.throttle import Throttle
from meterseal.errors import KvsError
from meterseal.kvs.gateway_keys import KeyTable, KvsKey, Right, Scope, split_key
from meterseal.runtime.auth import ANONYMOUS, CHALLENGE, UNAUTHENTICATED, Identity
from meterseal.runtime.connections import source_key

ROLE = "kvs-client"
TOO_MANY = "too many attempts; retry later"
KEYS_UNAVAILABLE = "the gateway cannot check API keys now"
_log = logging.getLogger(__name__)
KeyTableSource = Callable[[bool], Awaitable[KeyTable]]  # reload: a key it did not know


def key_scope(request: Request) -> Scope | None:
    """The scope of the key that signed `request` in, None if none did."""
    scope = getattr(request.state, "kvs_scope", None)
    return scope if isinstance(scope, Scope) else None


class KvsAuthenticator:
    """The caller's identity from its KVS API key (the key table read through `table`)."""

    def __init__(
        self,
        table: KeyTableSource,
        throttle: Throttle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.throttle = throttle or Throttle()
        self.clock = clock

    async def __call__(self, request: Request) -> Identity:
        """Anonymous without a header; the key's identity, or 401/429 (module doc)."""
        header = request.headers.get("authorization")
        if header is None:
            return ANONYMOUS
        host = request.client.host if request.client else "unknown"
        source, now = f"source:{source_key(host)}", self.clock()
        wait = self.throttle.retry_after([source], now)
        if wait > 0:
            raise HTTPException(429, TOO_MANY, headers={"Retry-After": str(max(1, int(wait)))})
        scheme, _, credential = header.strip().partition(" ")
        key: KvsKey | None = None
        if scheme.lower() == "bearer" and 0 < len(credential) <= 256:
            key = await self._verify(credential.strip())
        if key is None:
            self.throttle.failed([source], now)
            raise HTTPException(401, UNAUTHENTICATED, headers=CHALLENGE)
        if not self.throttle.spend(f"key:{key.key_id}", now):
            raise HTTPException(429, TOO_MANY, headers={"Retry-After": "1"})
        request.state.kvs_scope = key.scope
        return Identity(f"kvs-key:{key.key_id}", frozenset((ROLE,)))

    async def _verify(self, credential: str) -> KvsKey | None:
        try:
            table = await self.table(False)
            split = split_key(credential)
            if split is not None and split[0] not in table.keys:  # made since it was read?
                table = await self.table(True)
        except KvsError as exc:  # e.g. a rolled-back table: no key is verified against it
            _log.error("kvs: the key table cannot be used: %s", exc)
            raise HTTPException(503, KEYS_UNAVAILABLE) from None
        return table.verify(credential)


@dataclass(frozen=True)
class KvsAccess:
    """Lets through a key whose scope grants `right` (or `also`) on the route's bucket and key."""

    right: Right
    whole_store: bool = False  # scrub: a scope over every bucket
    also: Right | None = None  # a second right that suffices (an admin reads a bucket's policy)

    @property
    def name(self) -> str:
        """kvs:RIGHT (kvs:admin:* for the whole store, kvs:read|admin for either)."""
        rights = self.right.value + (f"|{self.also.value}" if self.also else "")
        return f"kvs:{rights}" + (":*" if self.whole_store else "")

    def allows(self, identity: Identity, request: Request) -> bool:
        """The caller's key scope covers the request (no scope: refused)."""
        scope = key_scope(request)
        if not identity.authenticated or ROLE not in identity.roles or scope is None:
            return False
        rights = (self.right,) if self.also is None else (self.right, self.also)
        return any(self._grants(scope, right, request) for right in rights)

    def _grants(self, scope: Scope, right: Right, request: Request) -> bool:
        if self.whole_store:
            return right in scope.rights and scope.bucket == "*"
        bucket = request.path_params.get("bucket")
        if not isinstance(bucket, str):
            return False
        key = request.path_params.get("key")
        if isinstance(key, str):
            return scope.allows(right, bucket, key)
        if right is Right.READ:  # a list: narrowed to the scope's prefix by the handler
            return scope.listing_prefix(bucket, request.query_params.get("prefix", "")) is not None
        return right in scope.rights and scope.covers(bucket) and scope.prefix == ""


READ = KvsAccess(Right.READ)
WRITE = KvsAccess(Right.WRITE)
ADMIN = KvsAccess(Right.ADMIN)
ADMIN_ALL = KvsAccess(Right.ADMIN, whole_store=True)
READ_OR_ADMIN = KvsAccess(Right.READ, also=Right.ADMIN)
