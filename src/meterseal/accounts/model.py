"""Accounts, API keys and access-log entries as the rest of meterseal sees them (sans-IO).

Four roles: a customer sees their own bills, readings, proofs and access log and nothing else;
a metrology auditor what an audit needs (bills' signed data, audit reports, log heads, the
access log); a utility operator the fleet, ingest, quarantine, regional load and integrity
verdicts; an administrator meters, tariffs and the CAS's policies and secrets. An account
holds one or more roles; a customer account is bound to exactly one customer id. An API key
acts for its account with a subset of the account's roles (its scope).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from meterseal.errors import ConfigurationError, MetersealError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class Role(enum.StrEnum):
    """What a person or machine is to meterseal."""

    CUSTOMER = "customer"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    ADMINISTRATOR = "administrator"


class AccountError(MetersealError):
    """An account or API key cannot be created or changed as asked."""


@dataclass(frozen=True)
class Account:
    """A person or machine that can sign in; `password_hash` is argon2id (PHC string)."""

    username: str
    roles: frozenset[Role]
    customer_id: str | None
    password_hash: str
    created_at: float
    disabled_at: float | None = None

    @property
    def enabled(self) -> bool:
        """Whether the account may still sign in and use its tokens and keys."""
        return self.disabled_at is None


@dataclass(frozen=True)
class ApiKey:
    """A machine's key: its public id, the SHA-256 of its secret, its scope (roles)."""

    key_id: str
    username: str
    digest: bytes
    scopes: frozenset[Role]
    label: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class AccessEntry:
    """One read of a customer's data: who (subject, roles), what (route, object), when."""

    at: float
    subject: str
    roles: str
    route: str
    customer_id: str
    object_id: str
    id: int = 0  # assigned by the store


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Roles from their names; ConfigurationError naming the valid ones."""
    try:
        return frozenset(Role(name.strip().lower()) for name in names)
    except ValueError as exc:
        valid = ", ".join(r.value for r in Role)
        raise ConfigurationError(f"{exc}; roles are {valid}") from None


def check_account(username: str, roles: frozenset[Role], customer_id: str | None) -> None:
    """AccountError unless the name is sane, there is a role, and a customer has one id."""
    if not NAME_PATTERN.fullmatch(username):
        raise AccountError(f"account name {username!r}: 1-64 of letters, digits and ._@-")
    if not roles:
        raise AccountError(f"account {username!r} needs a role")
    if (Role.CUSTOMER in roles) != (customer_id is not None):
        raise AccountError("a customer account, and only one, is bound to a customer id")
    if Role.CUSTOMER in roles and len(roles) > 1:
        raise AccountError("a customer account holds no other role")


class AccountRepository(Protocol):
    """Where accounts and API keys are kept (meterseal.storage.accounts implements it)."""

    def account(self, username: str) -> Account | None:
        """The account named `username`, enabled or not."""
        ...

    def api_key(self, key_id: str) -> ApiKey | None:
        """The API key with id `key_id`, revoked or not."""
        ...

    def revoke_token(self, token_id: str, username: str, expires: float, now: float) -> None:
        """Refuse the login token `token_id` from now on (sign-out); forget expired ones."""
        ...

    def token_revoked(self, token_id: str) -> bool:
        """Whether the login token `token_id` was revoked."""
        ...


class AccessLog(Protocol):
    """Where reads of customers' data are recorded and read back."""

    def record(self, entries: Sequence[AccessEntry]) -> None:
        """Append `entries`."""
        ...

    def entries(
        self, customer_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[AccessEntry]:
        """Entries with id > `after`, oldest first, of one customer or all."""
        ...
