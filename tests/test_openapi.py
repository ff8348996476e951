"""Every HTTP app answers what its OpenAPI description says: schemathesis, in-process, bounded.

For each app (the admin endpoint, the bills API anonymous and signed in, the readings
receiver; the CAS in tests/trust/test_openapi.py) schemathesis generates requests from
/openapi.json and checks that no answer is a 5xx and that every status code and body is the
one declared (errors included: 401, 403, 422 with `detail` a string or FastAPI's list, the
receiver's refusals).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meterseal.accounts.model import Role
from meterseal.billing.api import create_billing_app
from meterseal.runtime.lifecycle import Event, Lifecycle, admin_app
from meterseal.storage import Store
from meterseal.storage.bill_store import BillStore
from tests.accounts.people import MemoryAccounts, People
from tests.runtime.test_auth import Idle

pytest.importorskip("schemathesis")
from tests.openapi_check import conforms


@pytest.fixture
def people() -> People:
    """Accounts in memory: a customer and an auditor."""
    people = People(MemoryAccounts())
    people.add("alice", Role.CUSTOMER, customer_id="CUST-A")
    people.add("audrey", Role.AUDITOR)
    return people


@pytest.fixture
def bills_app(tmp_path: Path, people: People) -> Iterator[Any]:
    """The bills API over an empty store, signing in through `people`."""
    with Store.open(f"sqlite:///{tmp_path / 'bills.db'}") as store:
        yield create_billing_app(BillStore(store), people.authenticator, MemoryAccounts())


def test_the_admin_endpoint() -> None:
    lifecycle = Lifecycle()
    lifecycle.on(Event.START)
    lifecycle.on(Event.STARTED)
    assert conforms(admin_app(Idle(), lifecycle)) == []


@pytest.mark.parametrize("who", [None, "alice", "audrey"])
def test_the_bills_api(bills_app: Any, people: People, who: str | None) -> None:
    assert conforms(bills_app, people.headers(who)) == []


def test_the_readings_receiver() -> None:
    from meterseal.acquisition.http import create_app
    from meterseal.services.bus import MemoryBus
    from meterseal.services.intake import BusIntake

    # Generated bodies are garbage to the stages: each is refused, as declared (400/413/415/422).
    assert conforms(create_app(BusIntake(MemoryBus()))) == []
