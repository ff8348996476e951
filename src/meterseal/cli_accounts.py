"""`meterseal accounts …` and `meterseal api-keys …`: who may sign in to the HTTP APIs.

An account has roles (customer, auditor, operator, administrator; a customer is bound to a
customer id) and an argon2id password hash; an API key acts for an account with some of its
roles and is printed once (only its hash is stored). Both live in the store the APIs serve.
`accounts changes` prints the administrators' change log (the portal's changes) and checks
its hash chain.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Annotated

import typer
from rich.table import Table

from meterseal.cli_common import DEFAULT_STORE, StoreUrl, console
from meterseal.errors import ConfigurationError

accounts_app = typer.Typer(help="Accounts of people and machines.", no_args_is_help=True)
api_keys_app = typer.Typer(help="API keys of machines and scripts.", no_args_is_help=True)

Username = Annotated[str, typer.Argument(help="account name")]
RoleOption = Annotated[
    list[str], typer.Option("--role", help="customer, auditor, operator or administrator")
]


def _when(at: float | None) -> str:
    return "" if at is None else dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")


def _password(env_name: str) -> str:
    value = os.environ.get(env_name)
    if value:
        return value
    if not os.isatty(0):
        raise ConfigurationError(f"set {env_name} to the password (no terminal to ask on)")
    prompted: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return prompted


@accounts_app.command("add")
def accounts_add(
    username: Username,
    role: RoleOption,
    customer: Annotated[str | None, typer.Option(help="customer id (customer accounts)")] = None,
    password_env: Annotated[
        str, typer.Option(help="environment variable holding the password (else asked)")
    ] = "MS_ACCOUNT_PASSWORD",  # noqa: S107 - a variable name
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Add an account with a password; prints its name and roles."""
    from meterseal.accounts.credentials import hash_password
    from meterseal.accounts.model import Account, check_account, parse_roles
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    roles = parse_roles(role)
    check_account(username, roles, customer)  # before asking for a password
    password = _password(password_env)
    if len(password) < 8:
        raise ConfigurationError("a password has at least 8 characters")
    account = Account(username, roles, customer, hash_password(password), time.time())
    with Store.open(store) as db:
        AccountStore(db).add_account(account)
    print(f"account {username} roles {','.join(sorted(roles))} customer {customer or '-'}")


@accounts_app.command("list")
def accounts_list(store: StoreUrl = DEFAULT_STORE) -> None:
    """List the accounts (never their password hashes)."""
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    with Store.open(store) as db:
        found = AccountStore(db).accounts()
    table = Table("account", "roles", "customer", "created", "disabled")
    for a in found:
        roles = ",".join(sorted(a.roles))
        table.add_row(
            a.username, roles, a.customer_id or "", _when(a.created_at), _when(a.disabled_at)
        )
    console.print(table)


@accounts_app.command("disable")
def accounts_disable(username: Username, store: StoreUrl = DEFAULT_STORE) -> None:
    """Disable an account: its password, tokens and API keys stop working at once."""
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    with Store.open(store) as db:
        if not AccountStore(db).disable(username, time.time()):
            raise ConfigurationError(f"no account {username!r}")
    print(f"disabled {username}")


@accounts_app.command("changes")
def accounts_changes(
    store: StoreUrl = DEFAULT_STORE,
    limit: Annotated[int, typer.Option(help="show the newest N entries")] = 50,
) -> None:
    """The administrators' change log, newest last; exits 1 if its hash chain does not hold."""
    from meterseal.accounts.changes import check_chain
    from meterseal.storage import Store
    from meterseal.storage.admin_changes import ChangeStore

    with Store.open_read_only(store) as db:
        changes = ChangeStore(db).changes()
    table = Table("#", "when (UTC)", "who", "action", "object", "outcome")
    for c in changes[-limit:] if limit > 0 else changes:
        r = c.request
        table.add_row(str(c.id), _when(r.at), r.subject, r.action, r.object_id, r.outcome)
    console.print(table)
    problems = check_chain(changes)
    if problems:
        for problem in problems:
            console.print(f"[red]change log problem:[/red] {problem}", soft_wrap=True)
        raise typer.Exit(code=1)
    head = changes[-1].digest.hex() if changes else "(empty)"
    console.print(f"{len(changes)} changes, newest digest {head}: the chain holds", soft_wrap=True)


@api_keys_app.command("create")
def api_keys_create(
    username: Username,
    scope: Annotated[list[str], typer.Option("--scope", help="a role of the account")],
    label: Annotated[str, typer.Option(help="what the key is for")] = "",
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Create an API key for an account; prints its id and the key (shown only now)."""
    from meterseal.accounts.credentials import new_api_key
    from meterseal.accounts.model import ApiKey, parse_roles
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    made = new_api_key()
    key = ApiKey(made.key_id, username, made.digest, parse_roles(scope), label, time.time())
    with Store.open(store) as db:
        AccountStore(db).add_api_key(key)
    print(f"key_id {made.key_id}")
    print(f"api_key {made.key}")


@api_keys_app.command("list")
def api_keys_list(
    username: Annotated[str | None, typer.Argument(help="account name (all if omitted)")] = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """List API keys (ids, scopes, state; never the keys)."""
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    with Store.open(store) as db:
        found = AccountStore(db).api_keys(username)
    table = Table("key id", "account", "scope", "label", "created", "revoked")
    for k in found:
        scopes = ",".join(sorted(k.scopes))
        table.add_row(
            k.key_id, k.username, scopes, k.label, _when(k.created_at), _when(k.revoked_at)
        )
    console.print(table)


@api_keys_app.command("revoke")
def api_keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (key_id of create)")],
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Revoke an API key; it stops working at once."""
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore

    with Store.open(store) as db:
        if not AccountStore(db).revoke_api_key(key_id, time.time()):
            raise ConfigurationError(f"no API key {key_id!r}")
    print(f"revoked {key_id}")
