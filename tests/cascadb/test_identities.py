"""The PostgreSQL protocol's password check: the accounts' keys, tokens and passwords."""

from __future__ import annotations

from meterseal.accounts.model import Role
from meterseal.accounts.throttle import ThrottleLimits
from meterseal.cascadb.identities import WireLogin, may_run_sql
from meterseal.runtime.auth import ANONYMOUS, Identity
from tests.accounts.people import PASSWORD, MemoryAccounts, People

SOURCE = "192.0.2.7"


def _people(free_failures: int = 100) -> tuple[People, WireLogin]:
    """Accounts of every role; failures back off only after `free_failures`."""
    limits = ThrottleLimits(free_failures=free_failures, base_delay=10.0)
    people = People(MemoryAccounts(), limits=limits)
    people.add("mdc", Role.OPERATOR)
    people.add("root", Role.ADMINISTRATOR, Role.AUDITOR)
    people.add("ann", Role.AUDITOR)
    people.add("alice", Role.CUSTOMER, customer_id="CUST-A")
    return people, WireLogin(people.authenticator, clock=people.clock)


def test_a_key_a_token_or_the_password_of_the_named_operator_or_administrator() -> None:
    people, login = _people()
    assert login("mdc", people.api_key("mdc", Role.OPERATOR), SOURCE)
    assert login("mdc", people.token("mdc"), SOURCE)
    assert login("mdc", PASSWORD, SOURCE)
    assert login("root", PASSWORD, SOURCE)


def test_other_roles_other_accounts_and_wrong_secrets_are_refused() -> None:
    people, login = _people()
    assert not login("ann", PASSWORD, SOURCE)  # an auditor
    assert not login("alice", PASSWORD, SOURCE)  # a customer
    assert not login("alice", people.api_key("alice", Role.CUSTOMER), SOURCE)
    assert not login("mdc", people.api_key("root", Role.ADMINISTRATOR), SOURCE)  # root's key
    assert not login("mdc", people.token("root"), SOURCE)
    # an operator's key scoped to a role that may not run SQL
    people.add("both", Role.OPERATOR, Role.AUDITOR)
    assert not login("both", people.api_key("both", Role.AUDITOR), SOURCE)
    assert not login("mdc", "", SOURCE)
    assert not login("nobody", PASSWORD, SOURCE)
    assert login("mdc", PASSWORD, SOURCE)  # the refusals above were the check's, not back-off


def test_a_disabled_account_is_refused() -> None:
    people, login = _people()
    key = people.api_key("mdc", Role.OPERATOR)
    people.repository.disable("mdc", people.clock())
    assert not login("mdc", key, SOURCE)
    assert not login("mdc", PASSWORD, SOURCE)


def test_guessing_backs_off_even_the_right_password() -> None:
    people, login = _people(free_failures=2)
    for _ in range(3):
        assert not login("mdc", "guess", SOURCE)
    assert not login("mdc", PASSWORD, SOURCE)  # backing off: refused whatever the password
    people.clock.now += 60
    assert login("mdc", PASSWORD, SOURCE)


def test_who_may_run_sql() -> None:
    assert may_run_sql(Identity("mdc", frozenset({"operator"})))
    assert not may_run_sql(Identity("ann", frozenset({"auditor"})))
    assert not may_run_sql(ANONYMOUS)
