"""A billed, audited day for two customers, served by the portal app (SQLite only).

The bills API's own tests run on SQLite and PostgreSQL; the pages read through the same
`BillArchive`, so one store kind is enough here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from meterseal.accounts.model import Role
from meterseal.portal.app import PublishedKeys, create_portal_app
from meterseal.storage import Store
from meterseal.storage.accounts import AccountStore
from meterseal.storage.bill_store import BillStore
from tests.accounts.people import People
from tests.billing.conftest import Month, ca, fleet, month  # noqa: F401 - fixtures
from tests.billing.test_api import _bill, staff


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The portal's store: a SQLite file."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@dataclass
class Portal:
    """The portal over `month`: who was billed, each customer's account, the app."""

    month: Month
    app: FastAPI
    bills: BillStore
    billed: dict[str, str]  # customer -> bill id
    people: People
    customers: dict[str, str]  # customer id -> account name
    accounts: AccountStore

    def customer(self, n: int) -> tuple[str, str, str]:
        """(customer id, account, bill id) of the n-th customer."""
        customer = sorted(self.customers)[n]
        return customer, self.customers[customer], self.billed[customer]


def serve_portal(month: Month, billed: dict[str, str]) -> Iterator[Portal]:  # noqa: F811
    """The portal app on a read-only view of `month`'s store, accounts in its store."""
    store = Store.open_read_only(month.url)
    bills = BillStore(store)
    accounts = AccountStore(month.store)
    people = People(accounts)
    staff(people)
    customers = {
        customer: people.add(f"customer{n}", Role.CUSTOMER, customer_id=customer)
        for n, customer in enumerate(sorted(month.bills.customers()))
    }
    keys = PublishedKeys(month.billing_key.public_key(), month.authority_key.public_key())
    app = create_portal_app(bills, people.authenticator, accounts, keys)
    try:
        yield Portal(month, app, bills, billed, people, customers, accounts)
    finally:
        store.close()


@pytest.fixture
def portal(month: Month) -> Iterator[Portal]:  # noqa: F811 - the billing fixture
    """Both customers billed and audited clean."""
    yield from serve_portal(month, _bill(month))
