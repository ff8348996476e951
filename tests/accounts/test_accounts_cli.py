"""`meterseal accounts …` and `meterseal api-keys …` on SQLite and PostgreSQL, and the store."""

from __future__ import annotations

import pytest

from meterseal.accounts.authn import AccountAuthenticator
from meterseal.accounts.credentials import TokenSigner, password_matches
from meterseal.accounts.model import AccessEntry, Role
from meterseal.storage import Store
from meterseal.storage.accounts import AccountStore
from tests.accounts.people import T0
from tests.command_line import invoke
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures

PASSWORD_ENV = {"MS_ACCOUNT_PASSWORD": "a long enough password"}


def test_accounts_and_api_keys_from_the_command_line(db_url: str) -> None:  # noqa: F811
    store = ["--store", db_url]
    added = invoke(["accounts", "add", "ann", "--role", "auditor", *store], env=PASSWORD_ENV)
    assert added.exit_code == 0, added.output
    assert added.output == "account ann roles auditor customer -\n"
    customer = ["accounts", "add", "c1", "--role", "customer", "--customer", "CUST-1", *store]
    assert invoke(customer, env=PASSWORD_ENV).exit_code == 0
    listed = invoke(["accounts", "list", *store])
    assert "ann" in listed.output
    assert "CUST-1" in listed.output
    assert "argon2" not in listed.output  # never the hash
    again = invoke(["accounts", "add", "ann", "--role", "auditor", *store], env=PASSWORD_ENV)
    assert again.exit_code != 0
    assert "exists" in again.output

    created = invoke(["api-keys", "create", "ann", "--scope", "auditor", "--label", "ci", *store])
    assert created.exit_code == 0, created.output
    lines = dict(line.split(" ", 1) for line in created.output.splitlines())
    key_id, key = lines["key_id"], lines["api_key"]
    assert key.startswith(f"msk_{key_id}_")
    assert key_id in invoke(["api-keys", "list", *store]).output
    assert key not in invoke(["api-keys", "list", *store]).output  # shown once
    wider = invoke(["api-keys", "create", "ann", "--scope", "administrator", *store])
    assert wider.exit_code != 0  # a key's scope is within its account's roles

    with Store.open(db_url) as db:
        accounts = AccountStore(db)
        ann = accounts.account("ann")
        assert ann is not None
        assert ann.roles == {Role.AUDITOR}
        assert password_matches(ann.password_hash, PASSWORD_ENV["MS_ACCOUNT_PASSWORD"])
        authenticator = AccountAuthenticator(accounts, TokenSigner(b"k" * 32))
        assert authenticator.identify(key, T0) is not None
        assert invoke(["api-keys", "revoke", key_id, *store]).output == f"revoked {key_id}\n"
        assert authenticator.identify(key, T0) is None
        assert invoke(["accounts", "disable", "ann", *store]).output == "disabled ann\n"
        disabled = accounts.account("ann")
        assert disabled is not None
        assert not disabled.enabled
    assert invoke(["accounts", "disable", "nobody", *store]).exit_code != 0
    assert invoke(["api-keys", "revoke", "0" * 16, *store]).exit_code != 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "root"], "roles are customer"),
        (["--role", "customer"], "bound to a customer id"),
        (["--role", "auditor", "--customer", "CUST-1"], "bound to a customer id"),
    ],
)
def test_malformed_accounts_are_refused_before_asking_a_password(
    args: list[str], message: str, tmp_path: object
) -> None:
    result = invoke(["accounts", "add", "x1", *args, "--store", f"sqlite:///{tmp_path}/s.db"])
    assert result.exit_code != 0
    assert message in result.output


def test_a_short_password_is_refused(tmp_path: object) -> None:
    store = f"sqlite:///{tmp_path}/s.db"
    result = invoke(
        ["accounts", "add", "x1", "--role", "operator", "--store", store],
        env={"MS_ACCOUNT_PASSWORD": "short"},
    )
    assert result.exit_code != 0
    assert "at least 8" in result.output


def test_the_access_log_pages_by_customer(db_url: str) -> None:  # noqa: F811
    with Store.open(db_url) as db:
        log = AccountStore(db)
        entries = [
            AccessEntry(T0 + n, "ann", "auditor", "/v1/bills/{bill_id:path}", c, f"{c}/bill")
            for n, c in enumerate(["A", "B", "A"])
        ]
        log.record(entries)
        log.record([])
        assert [e.customer_id for e in log.entries()] == ["A", "B", "A"]
        only_a = log.entries("A")
        assert [e.at for e in only_a] == [T0, T0 + 2]
        assert log.entries("A", after=only_a[0].id) == [only_a[1]]
        assert len(log.entries(limit=2)) == 2
