"""`meterseal demo --serve`: the demo's store and the portal left running, one account a role.

After the demo, the bills API and portal (`bills serve`'s app) serve the demo's SQLite store
and deployment (its published keys, its token key) until Ctrl-C, with an account for each
role: a customer who was billed, an auditor, an operator and an administrator. Their
passwords are drawn now and printed once; nothing about them is fixed. A dissemination router
runs in the same process (demo_router: simulated attestation, an app `demo-app`), so the
customer's apps page gives and withdraws consent as against `bills serve --router-nats`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from rich.console import Console

from meterseal.accounts.model import Account, Role
from meterseal.deployment import Deployment
from meterseal.storage import Store

ROLES = (Role.CUSTOMER, Role.AUDITOR, Role.OPERATOR, Role.ADMINISTRATOR)


@dataclass(frozen=True)
class Login:
    """One demo account: its name, role, password (shown once) and customer, if any."""

    username: str
    role: Role
    password: str
    customer_id: str | None


def billed_customer(store: Store) -> str:
    """The first customer (by id) with a bill in the store: the demo customer's account."""
    from meterseal.errors import ConfigurationError
    from meterseal.storage.bill_store import BillStore

    bills = BillStore(store)
    for customer in sorted(bills.customers()):
        if bills.bill_summaries(customer):
            return customer
    raise ConfigurationError("the demo billed nobody: there is no bill to show")


def add_accounts(store: Store, customer_id: str) -> list[Login]:
    """An account per role (a fresh random password each) in the store's accounts."""
    from meterseal.accounts.credentials import hash_password
    from meterseal.storage.accounts import AccountStore

    accounts = AccountStore(store)
    logins = []
    for role in ROLES:
        customer = customer_id if role is Role.CUSTOMER else None
        login = Login(f"demo-{role.value}", role, secrets.token_urlsafe(12), customer)
        accounts.add_account(
            Account(
                login.username,
                frozenset({role}),
                customer,
                hash_password(login.password),
                time.time(),
            )
        )
        logins.append(login)
    return logins


def serve_demo(console: Console, deployment: Deployment, store_url: str, listen: str) -> None:
    """Serve the bills API and portal on the demo's store until Ctrl-C (SIGINT or SIGTERM)."""
    from meterseal.accounts.authn import AccountAuthenticator
    from meterseal.accounts.credentials import TokenSigner
    from meterseal.accounts.token_key import token_key
    from meterseal.acquisition.anonymize import Anonymizer
    from meterseal.demo_router import DEMO_APP, MEMBERS, demo_router
    from meterseal.meter.enrolment import Enrolment
    from meterseal.portal.admin_tools import AdminTools
    from meterseal.portal.app import PublishedKeys, create_portal_app
    from meterseal.portal.consent import RouterConsent
    from meterseal.runtime.http import HttpAppService
    from meterseal.runtime.lifecycle import serve_stage
    from meterseal.runtime.readiness import Readiness
    from meterseal.storage.accounts import AccountStore
    from meterseal.storage.admin_changes import ChangeStore
    from meterseal.storage.bill_store import BillStore
    from meterseal.storage.fleet import FleetStore

    with Store.open(store_url) as writable:
        logins = add_accounts(writable, billed_customer(writable))
    keys = PublishedKeys(deployment.billing_key.public_key(), deployment.metrology_key.public_key())
    console.print("\n[bold]the portal, on the demo's data[/bold] (sign in at /portal/login):")
    for login in logins:
        whose = f" (customer {login.customer_id})" if login.customer_id else ""
        # Printed once, as asked for: a throwaway demo store in a temporary directory.
        console.print(
            f"  login {login.role.value:<13} {login.username:<20} password {login.password}{whose}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    operator_key = secrets.token_bytes(32)
    router = demo_router(operator_key)
    members = ", ".join(name for name, _, _ in MEMBERS)
    console.print(
        f"the dissemination router runs in this process (SIMULATED attestation), members "
        f"{members}: the customer gives or withdraws {DEMO_APP}'s consent at /portal/apps",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print("the portal is at the `listening bills` URL below + /portal/; Ctrl-C stops it")
    with Store.open_read_only(store_url) as db, Store.open(store_url) as writable:
        people = AccountStore(writable)
        signer = TokenSigner(token_key(deployment.directory, None))
        authenticator = AccountAuthenticator(people, signer)
        # The administrator's changes (no CAS in the demo: its CAS page says so).
        enrolment = Enrolment(deployment.ca_key, deployment.ca_cert, writable, deployment.directory)
        tools = AdminTools(ChangeStore(writable), enrolment, BillStore(writable))
        anonymizer = Anonymizer(deployment.anonymization_key)
        consent = RouterConsent(router.channel, operator_key, anonymizer, db, "the demo's process")
        app = create_portal_app(
            BillStore(db), authenticator, people, keys, consent, fleet=FleetStore(db),
            meters=writable, admin=tools,
        )  # fmt: skip
        service = HttpAppService("bills", app, listen, 7480, None, Readiness(db.not_ready))
        asyncio.run(serve_stage(service, admin=None))
    console.print("portal stopped; the demo's files are removed")
