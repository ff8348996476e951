"""`meterseal bills …`: serve customers' bills and proofs and the auditor's reports over HTTP.

With the command line, not in billing: it composes the billing API with a read-only store for
the bills, the accounts that may sign in, and the access log (written through a second,
writable engine on the same database).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    ClientCerts,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    TlsName,
    passphrase,
    server_tls,
)
from meterseal.errors import ConfigurationError
from meterseal.services.cli import Admin

if TYPE_CHECKING:
    import ssl

    from fastapi import FastAPI

    from meterseal.commands.desk import CommandDesk
    from meterseal.portal.app import PublishedKeys
    from meterseal.runtime.readiness import Readiness

bills_app = typer.Typer(
    help="The bills kept (ids, readings) and the billing API over HTTP.", no_args_is_help=True
)


@bills_app.command("list")
def bills_list(
    customer: Annotated[str | None, typer.Option(help="only this customer's bills")] = None,
    first_day: Annotated[
        str | None, typer.Option("--from", help="only bills of the period from this day")
    ] = None,
    days: Annotated[int, typer.Option(help="days of the period (with --from)")] = 30,
    ids: Annotated[bool, typer.Option("--ids", help="print only the ids, one a line")] = False,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """The bills kept, in log order: id, kind, total and standing (in force, credited, …)."""
    import datetime as dt

    from meterseal.billing.bill import parse_signed_bill
    from meterseal.billing.ledger import ledger
    from meterseal.cli_billing_parts import IdRows, period_option
    from meterseal.cli_common import console, shown
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore
    from meterseal.storage.imports import ImportStore

    period = period_option(first_day, days) if first_day else None
    with Store.open_read_only(store) as db:
        kept = BillStore(db).signed_bills(
            customer,
            period.start if period else None,
            period.end if period else None,
        )
        # "0 bills" for a mistyped customer would read as "not billed yet": say it instead.
        if customer and not kept and customer not in ImportStore(db).customers_between(0, 2**62):
            raise ConfigurationError(f"no customer {customer!r} in {shown(store)}")
    entries = ledger((i, parse_signed_bill(signed)[0]) for i, signed in kept)
    if ids:
        for e in entries:
            print(e.bill.bill_id)  # plain stdout: for scripts and copying
        return
    table = IdRows("bill", "kind", "period (UTC)", "total", "standing", "log")
    for e in entries:
        b = e.bill
        start = dt.datetime.fromtimestamp(b.period.start, dt.UTC).date()
        end = dt.datetime.fromtimestamp(b.period.end, dt.UTC).date()
        table.add_row(
            b.bill_id,
            b.kind,
            f"{start} to {end}",
            f"{b.charges.total} {b.charges.currency}",
            e.standing,
            str(e.log_index),
        )
    table.print()
    console.print(
        f"{len(entries)} bills in {shown(store)}; a bill's readings: meterseal bills readings BILL",
        soft_wrap=True,
    )


@bills_app.command("readings")
def bills_readings(
    bill_id: Annotated[str, typer.Argument(metavar="BILL")],
    limit: Annotated[int, typer.Option(help="readings to list (0: all)")] = 10,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """A bill's readings in bill order as METER:COUNTER (what `export-bill --reading` takes)."""
    import datetime as dt

    from meterseal.billing.bill import manifest_from_cbor
    from meterseal.cli_billing_parts import IdRows
    from meterseal.cli_common import console, shown
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    with Store.open_read_only(store) as db:
        bills = BillStore(db)
        stored = bills.bill(bill_id)
        if stored is None:
            raise ConfigurationError(
                f"no bill {bill_id!r} in {shown(store)} (meterseal bills list shows the ids)"
            )
        entries = manifest_from_cbor(stored.manifest)
        chosen = entries if limit <= 0 else entries[:limit]
        rows = {(p.meter_id, p.counter): p for p in bills.packets_by_key(e[:2] for e in chosen)}
    table = IdRows("reading", "time (UTC)", "Wh")
    for e in chosen:
        p = rows.get((e.meter_id, e.counter))
        when = (
            "" if p is None else f"{dt.datetime.fromtimestamp(p.timestamp, dt.UTC):%Y-%m-%d %H:%M}"
        )
        table.add_row(f"{e.meter_id}:{e.counter}", when, "" if p is None else str(p.energy_wh))
    table.print()
    if len(chosen) < len(entries):
        console.print(f"… {len(entries) - len(chosen)} more (--limit 0 lists all)")
    if chosen:
        first = chosen[0]
        console.print(
            f"export one: meterseal export-bill '{bill_id}' "
            f"--reading {first.meter_id}:{first.counter}",
            soft_wrap=True,
        )


RouterNats = Annotated[
    str, typer.Option(help="the router's NATS URL: customers see and change consent per app")
]
RouterKeys = Annotated[Path, typer.Option(help="the router's key directory (its operator.key)")]
RouterNamespace = Annotated[str, typer.Option(help="the router's subject namespace")]
Health = Annotated[
    str,
    typer.Option(
        help="services the operator's Services page asks: NAME=URL, … (admin endpoints; "
        "[portal] health)"
    ),
]


@bills_app.command("serve")
def bills_serve(
    store: StoreUrl = DEFAULT_STORE,
    listen: Annotated[str, typer.Option(help="HTTP listen address host:port")] = "127.0.0.1:7480",
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    tls: TlsName = None,
    client_certs: ClientCerts = "optional",
    admin: Admin = "127.0.0.1:0",
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
    router_nats: RouterNats = "",
    router_keys: RouterKeys = Path("router"),
    router_namespace: RouterNamespace = "ms.dissem",
    cas: Annotated[
        str | None, typer.Option("--cas", help="the CAS's URL: the administrator's CAS pages")
    ] = None,
    health: Health = "",
) -> None:
    """Serve the billing API and the customer portal (/portal/) until Ctrl-C.

    Callers sign in with accounts (`meterseal accounts add`); the portal publishes the
    deployment's billing.pub.pem and metrology.pub.pem at /v1/keys for browsers to pin.
    The administrator's pages provision meters with the deployment CA, publish tariffs, keep
    the change log in the store and reach the CAS at --cas (sharing this store's accounts).
    """
    from rich.console import Console

    from meterseal.accounts.authn import AccountAuthenticator
    from meterseal.accounts.credentials import TokenSigner, token_key
    from meterseal.portal.admin_tools import deployment_tools
    from meterseal.portal.app import create_portal_app
    from meterseal.portal.consent import router_consent
    from meterseal.portal.health import HealthProbe, parse_targets
    from meterseal.runtime.address import parse_address
    from meterseal.runtime.readiness import Readiness
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore
    from meterseal.storage.bill_store import BillStore
    from meterseal.storage.fleet import FleetStore

    try:
        address = str(parse_address(listen, 7480))  # refused before the store is opened
        probe = HealthProbe(parse_targets(health), verify=_deployment_ca(deployment_dir))
        context = server_tls(deployment_dir, tls, client_certs, passphrase_env)
        # The bills through a read-only engine: the API never writes them, and a bug in it
        # must not be able to. Accounts and the access log through a writable one, opened
        # second: a store that does not exist or is not migrated is refused, not made.
        with Store.open_read_only(store) as db, Store.open(store) as writable:
            signer = TokenSigner(token_key(deployment_dir, passphrase(passphrase_env)))
            keys = _published_keys(deployment_dir)  # warned only once the store is reached
            people = AccountStore(writable)
            authenticator = AccountAuthenticator(people, signer)
            consent = None
            if router_nats:  # the apps page: consent through the router (portal.consent)
                consent = router_consent(
                    router_nats, router_keys, router_namespace, deployment_dir, db,
                    passphrase(passphrase_env),
                )  # fmt: skip
            tools, warnings = deployment_tools(
                deployment_dir, writable, cas, passphrase(passphrase_env)
            )
            for warning in warnings:
                Console(stderr=True).print(f"warning: {warning}", soft_wrap=True, markup=False)
            app = create_portal_app(
                BillStore(db), authenticator, people, keys, consent, fleet=FleetStore(db),
                meters=writable,  # the administrator's revoke: `meters revoke`'s store call
                admin=tools,  # provisioning, tariffs, the CAS, the change log
                health=probe,
                commands=_command_desk(deployment_dir, passphrase(passphrase_env)),
            )  # fmt: skip
            asyncio.run(_serve(app, address, context, Readiness(db.not_ready), admin))
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {listen}: {exc}") from exc


def _command_desk(deployment_dir: Path, secret: bytes | None) -> CommandDesk | None:
    """The meter commands' desk when the deployment has the operator command key."""
    from meterseal.cli_common import console
    from meterseal.commands.desk import CommandDesk
    from meterseal.commands.keys import COMMAND_KEY, load_operator_key
    from meterseal.commands.logfile import CommandLogFile

    if not (deployment_dir / COMMAND_KEY).exists():
        return None
    key = load_operator_key(deployment_dir, secret)
    log = CommandLogFile(deployment_dir / "commands.log")
    torn = log.recover()  # a crash mid-append: keep every complete entry, set the torn one aside
    if torn is not None:
        console.print(f"recovered {log.path}: {torn}", soft_wrap=True, highlight=False)
    return CommandDesk(key, log, outbox=deployment_dir / "outbox")


def _deployment_ca(deployment_dir: Path) -> ssl.SSLContext | bool:
    """What verifies the services' https admin endpoints: the deployment's CA when it has one
    (a trusted worker's TLS key is issued under it), else the system's."""
    from cryptography import x509

    from meterseal.deployment import CA_CERT
    from meterseal.runtime.tls import client_context

    path = deployment_dir / CA_CERT
    return (
        client_context(x509.load_pem_x509_certificate(path.read_bytes())) if path.exists() else True
    )


def _published_keys(deployment_dir: Path) -> PublishedKeys | None:
    """The billing and authority public keys of the deployment, None (with a warning) if absent."""
    from rich.console import Console

    from meterseal.cli_billing_parts import public_key_file
    from meterseal.portal.app import PublishedKeys

    files = [deployment_dir / "billing.pub.pem", deployment_dir / "metrology.pub.pem"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        Console(stderr=True).print(
            f"warning: {', '.join(missing)} missing: the portal publishes no keys, so "
            "browsers cannot verify bills",
            soft_wrap=True,
            markup=False,
        )
        return None
    return PublishedKeys(public_key_file(files[0]), public_key_file(files[1]))


async def _serve(
    app: FastAPI, listen: str, tls: ssl.SSLContext | None, readiness: Readiness, admin: str
) -> None:
    from meterseal.runtime.http import HttpAppService
    from meterseal.runtime.lifecycle import serve_stage

    # `serve_stage` prints `listening bills URL` on stdout (scripts wait for it).
    service = HttpAppService("bills", app, listen, 7480, tls, readiness)
    await serve_stage(service, admin=None if admin == "off" else admin)
