"""Who may run SQL on CascaDB: the accounts' identities, over HTTP and the PostgreSQL protocol.

Over HTTP the runtime's `AccountAuthenticator` reads `Authorization: Bearer` (a login token or
an `msk_` API key) and the route's rule lets operators and administrators through (401 for
no or a wrong credential, 403 for another role). The PostgreSQL protocol has no bearer
header: `WireLogin` checks the password a client sends (AuthenticationCleartextPassword),
which may be the same API key or login token, or the account's own password (argon2id), for
the account named as the protocol's user; the server asks for it only after TLS is up, so it
is as protected in transit as the bearer header is. SCRAM is not offered: it needs a verifier
stored per account, and the accounts keep argon2id hashes and SHA-256 key digests instead.
Failures count against the source and the account in the accounts' throttle (shared with the
HTTP side), and every refusal is the one answer "password authentication failed".
"""

from __future__ import annotations

import time
from collections.abc import Callable

from meterseal.accounts.authn import AccountAuthenticator
from meterseal.accounts.credentials import password_matches, split_api_key
from meterseal.runtime.auth import Identity
from meterseal.runtime.connections import source_key

SQL_ROLES = ("operator", "administrator")  # the utility's staff; customers reach data by bills


def may_run_sql(identity: Identity) -> bool:
    """Whether an identity may run SQL (an authenticated operator or administrator)."""
    return identity.authenticated and not identity.roles.isdisjoint(SQL_ROLES)


class WireLogin:
    """The PostgreSQL protocol's password check against the accounts (module doc)."""

    def __init__(
        self, authenticator: AccountAuthenticator, clock: Callable[[], float] = time.time
    ) -> None:
        self.authenticator = authenticator
        self.clock = clock

    def __call__(self, user: str, password: str, source: str) -> bool:
        """Whether `password` proves the account `user` and it may run SQL (blocking)."""
        now = self.clock()
        keys = [f"source:{source_key(source)}", f"account:{user}"]
        throttle = self.authenticator.throttle
        if throttle.retry_after(keys, now) > 0:
            return False
        identity = self._identity(user, password, now)
        if identity is None or identity.subject != user:
            throttle.failed(keys, now)
            return False
        throttle.succeeded(keys[1])
        return may_run_sql(identity)

    def _identity(self, user: str, password: str, now: float) -> Identity | None:
        if not 0 < len(password) <= 4096:
            return None
        found = self.authenticator.identify(password, now)  # an API key or a login token
        if found is not None or split_api_key(password) is not None:
            return found
        accounts = self.authenticator.accounts
        account = accounts.account(user)
        proven = password_matches(account.password_hash if account else None, password)
        if account is None or not proven or not account.enabled:
            return None
        return Identity(user, frozenset(str(r) for r in account.roles), account.customer_id)
