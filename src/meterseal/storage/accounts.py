"""Accounts, API keys, signed-out tokens and the access log in the store (`AccountRepository`,
`AccessLog`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from meterseal.accounts.model import (
    AccessEntry,
    Account,
    AccountError,
    ApiKey,
    Role,
    check_account,
)
from meterseal.storage.schema import access_log, accounts, api_keys, revoked_tokens
from meterseal.storage.store import Store


def _roles(text: str) -> frozenset[Role]:
    return frozenset(Role(name) for name in text.split(",") if name)


def _text(roles: frozenset[Role]) -> str:
    return ",".join(sorted(roles))


def _account(row: Any) -> Account:
    return Account(
        row.username,
        _roles(row.roles),
        row.customer_id,
        row.password_hash,
        row.created_at,
        row.disabled_at,
    )


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        row.key_id,
        row.username,
        bytes(row.digest),
        _roles(row.scopes),
        row.label,
        row.created_at,
        row.revoked_at,
    )


class AccountStore:
    """The accounts, API keys and access log of one `Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_account(self, account: Account) -> None:
        """Store a new account; AccountError if the name is taken or the account malformed."""
        check_account(account.username, account.roles, account.customer_id)
        with self.store.transaction() as connection:
            if connection.scalar(sa.select(accounts.c.username).filter_by(
                    username=account.username)) is not None:  # fmt: skip
                raise AccountError(f"account {account.username!r} exists")
            connection.execute(
                accounts.insert().values(
                    username=account.username,
                    roles=_text(account.roles),
                    customer_id=account.customer_id,
                    password_hash=account.password_hash,
                    created_at=account.created_at,
                    disabled_at=account.disabled_at,
                )
            )

    def account(self, username: str) -> Account | None:
        """The account named `username`, enabled or not."""
        with self.store.connection() as connection:
            row = connection.execute(sa.select(accounts).filter_by(username=username)).first()
        return None if row is None else _account(row)

    def accounts(self) -> list[Account]:
        """Every account, by name."""
        with self.store.connection() as connection:
            rows = connection.execute(sa.select(accounts).order_by(accounts.c.username))
            return [_account(row) for row in rows]

    def disable(self, username: str, now: float) -> bool:
        """Disable an account (its tokens and keys stop working); False if there is none."""
        with self.store.transaction() as connection:
            result = connection.execute(
                accounts.update()
                .where(accounts.c.username == username, accounts.c.disabled_at.is_(None))
                .values(disabled_at=now)
            )
            return result.rowcount > 0 or self._exists(connection, username)

    def _exists(self, connection: sa.Connection, username: str) -> bool:
        found = connection.scalar(sa.select(accounts.c.username).filter_by(username=username))
        return found is not None

    def add_api_key(self, key: ApiKey) -> None:
        """Store a new API key; AccountError unless its account exists and holds its scope."""
        owner = self.account(key.username)
        if owner is None:
            raise AccountError(f"no account {key.username!r}")
        if not key.scopes or not key.scopes <= owner.roles:
            held = _text(owner.roles)
            raise AccountError(f"a key's scope is some of its account's roles ({held})")
        with self.store.transaction() as connection:
            connection.execute(
                api_keys.insert().values(
                    key_id=key.key_id,
                    username=key.username,
                    digest=key.digest,
                    scopes=_text(key.scopes),
                    label=key.label,
                    created_at=key.created_at,
                    revoked_at=key.revoked_at,
                )
            )

    def api_key(self, key_id: str) -> ApiKey | None:
        """The API key with id `key_id`, revoked or not."""
        with self.store.connection() as connection:
            row = connection.execute(sa.select(api_keys).filter_by(key_id=key_id)).first()
        return None if row is None else _api_key(row)

    def api_keys(self, username: str | None = None) -> list[ApiKey]:
        """API keys (of one account, or all), oldest first."""
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if username is not None:
            query = query.filter_by(username=username)
        with self.store.connection() as connection:
            return [_api_key(row) for row in connection.execute(query)]

    def revoke_api_key(self, key_id: str, now: float) -> bool:
        """Revoke a key; False if there is no such key."""
        with self.store.transaction() as connection:
            connection.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            found = connection.scalar(sa.select(api_keys.c.key_id).filter_by(key_id=key_id))
        return found is not None

    def revoke_token(self, token_id: str, username: str, expires: float, now: float) -> None:
        """Refuse the login token `token_id` until it expires; forget expired revocations."""
        with self.store.transaction() as connection:
            connection.execute(revoked_tokens.delete().where(revoked_tokens.c.expires_at <= now))
            found = sa.select(revoked_tokens.c.token_id).filter_by(token_id=token_id)
            if connection.scalar(found) is None:
                connection.execute(
                    revoked_tokens.insert().values(
                        token_id=token_id, username=username, expires_at=expires, revoked_at=now
                    )
                )

    def token_revoked(self, token_id: str) -> bool:
        """Whether the login token `token_id` was signed out (and has not expired since)."""
        query = sa.select(revoked_tokens.c.token_id).filter_by(token_id=token_id)
        with self.store.connection() as connection:
            return connection.scalar(query) is not None

    def record(self, entries: Sequence[AccessEntry]) -> None:
        """Append reads of customers' data to the access log."""
        if not entries:
            return
        rows = [
            {
                "at": e.at,
                "subject": e.subject,
                "roles": e.roles,
                "route": e.route[:256],
                "customer_id": e.customer_id,
                "object_id": e.object_id[:256],
            }
            for e in entries
        ]
        with self.store.transaction() as connection:
            connection.execute(access_log.insert(), rows)

    def entries(
        self, customer_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[AccessEntry]:
        """Access-log entries with id > `after`, oldest first, of one customer or all."""
        query = sa.select(access_log).where(access_log.c.id > after)
        if customer_id is not None:
            query = query.where(access_log.c.customer_id == customer_id)
        query = query.order_by(access_log.c.id).limit(limit)
        with self.store.connection() as connection:
            return [
                AccessEntry(
                    row.at,
                    row.subject,
                    row.roles,
                    row.route,
                    row.customer_id,
                    row.object_id,
                    row.id,
                )
                for row in connection.execute(query)
            ]
