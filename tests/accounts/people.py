"""Accounts for tests: an in-memory repository, cheap password hashes, tokens on a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from meterseal.accounts.authn import AccountAuthenticator
from meterseal.accounts.credentials import (
    UNSAFE_FAST_HASHING,
    TokenSigner,
    hash_password,
    new_api_key,
)
from meterseal.accounts.model import (
    AccessEntry,
    Account,
    AccountRepository,
    ApiKey,
    Role,
    check_account,
)
from meterseal.accounts.throttle import Throttle, ThrottleLimits

PASSWORD = "correct horse battery"
T0 = 1_793_534_400.0


@dataclass
class Clock:
    """A clock the test moves."""

    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class MemoryAccounts:
    """`AccountRepository` and `AccessLog` in memory (the CAS tests' state is in memory too)."""

    accounts: dict[str, Account] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)
    log: list[AccessEntry] = field(default_factory=list)
    revoked: dict[str, float] = field(default_factory=dict)  # token id -> its expiry

    def add_account(self, account: Account) -> None:
        check_account(account.username, account.roles, account.customer_id)
        self.accounts[account.username] = account

    def account(self, username: str) -> Account | None:
        return self.accounts.get(username)

    def disable(self, username: str, now: float) -> bool:
        self.accounts[username] = replace(self.accounts[username], disabled_at=now)
        return True

    def add_api_key(self, key: ApiKey) -> None:
        self.keys[key.key_id] = key

    def api_key(self, key_id: str) -> ApiKey | None:
        return self.keys.get(key_id)

    def revoke_api_key(self, key_id: str, now: float) -> bool:
        self.keys[key_id] = replace(self.keys[key_id], revoked_at=now)
        return True

    def revoke_token(self, token_id: str, username: str, expires: float, now: float) -> None:
        self.revoked = {t: e for t, e in self.revoked.items() if e > now}
        self.revoked[token_id] = expires

    def token_revoked(self, token_id: str) -> bool:
        return token_id in self.revoked

    def record(self, entries: Sequence[AccessEntry]) -> None:
        self.log.extend(replace(e, id=len(self.log) + i + 1) for i, e in enumerate(entries))

    def entries(
        self, customer_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[AccessEntry]:
        found = [e for e in self.log if e.id > after and customer_id in (None, e.customer_id)]
        return found[:limit]


class Repository(AccountRepository, Protocol):
    """What the tests add accounts and keys to (MemoryAccounts, or the store's)."""

    def add_account(self, account: Account) -> None: ...

    def add_api_key(self, key: ApiKey) -> None: ...

    def disable(self, username: str, now: float) -> bool: ...

    def revoke_api_key(self, key_id: str, now: float) -> bool: ...


class People:
    """Accounts in `repository` and the authenticator that knows them, on `clock`."""

    def __init__(
        self,
        repository: Repository,
        clock: Clock | None = None,
        limits: ThrottleLimits | None = None,
    ) -> None:
        self.repository = repository
        self.clock = clock or Clock()
        self.signer = TokenSigner(b"test token key, 32 bytes long!!!")
        self.authenticator = AccountAuthenticator(
            repository,
            self.signer,
            Throttle(limits or ThrottleLimits()),
            clock=self.clock,
        )

    def add(self, username: str, *roles: Role, customer_id: str | None = None) -> str:
        """An account with `roles` and the tests' password (cheaply hashed); its name."""
        hashed = hash_password(PASSWORD, UNSAFE_FAST_HASHING)
        account = Account(username, frozenset(roles), customer_id, hashed, self.clock())
        self.repository.add_account(account)
        return username

    def api_key(self, username: str, *scopes: Role) -> str:
        """A new API key of `username` scoped to `scopes`; the key."""
        made = new_api_key()
        key = ApiKey(made.key_id, username, made.digest, frozenset(scopes), "test", self.clock())
        self.repository.add_api_key(key)
        return made.key

    def token(self, username: str) -> str:
        """A login token of `username`, issued now."""
        return self.signer.issue(username, self.clock())

    def headers(self, username: str | None) -> dict[str, str]:
        """The Authorization header of `username` (none for None: anonymous)."""
        if username is None:
            return {}
        return {"Authorization": f"Bearer {self.token(username)}"}
