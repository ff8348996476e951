"""`meterseal router pseudonym | consent grant|revoke|list`: a customer's consent, per app.

Consent names a customer's pseudonyms (one per meter, see `customers`): the commands find
them from the customer's id with the deployment's anonymization key and the store, and
refuse a pseudonym nobody's data travels under. They are the operator's tools, so they join
`meterseal router` here (the full CLI loads this module) and stay out of the lean
`python -m meterseal.dissemination` that trusted routers and aggregators run and measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from meterseal.cli_common import DEFAULT_STORE, console
from meterseal.dissemination.cli import dissemination_app
from meterseal.dissemination.cli_serve import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_KEYS,
    DEFAULT_NATS,
    KeysDir,
    Namespace,
    NatsUrl,
    operator,
    router_passphrase,
)
from meterseal.errors import ConfigurationError
from meterseal.runtime.nats_endpoint import shown

consent_app = typer.Typer(
    help="A customer's consent to an app: grant, revoke, list.", no_args_is_help=True
)
DeploymentDir = Annotated[
    Path,
    typer.Option(
        "--deployment", "-d", help="the deployment (its anonymization key makes the pseudonyms)"
    ),
]
StoreUrl = Annotated[str, typer.Option("--store", help="the head-end's store (meters, readings)")]
CustomerOpt = Annotated[
    str, typer.Option("--customer", help="the customer's id (as the meter registry has it)")
]
PseudonymOpt = Annotated[
    str, typer.Option("--pseudonym", help="expert: one pseudonym (32 hex digits) instead")
]
AppOpt = Annotated[str, typer.Option("--app", help="the app's member name")]


def _meters(customer: str, pseudonym: str, deployment: Path, store: str) -> list[Any]:
    """The (customer, meter, pseudonym) rows consent is about; refuses unknown ones."""
    from meterseal.dissemination.customers import (
        MeterPseudonym,
        customer_pseudonyms,
        deployment_anonymizer,
        parse_pseudonym,
        stored_counts,
    )
    from meterseal.storage import Store

    if bool(customer) == bool(pseudonym):
        raise typer.BadParameter("name the customer: --customer ID (or --pseudonym HEX)")
    with Store.open_read_only(store) as db:
        if customer:
            found = customer_pseudonyms(
                db, deployment_anonymizer(deployment, router_passphrase()), customer
            )
            if not found:
                raise ConfigurationError(
                    f"unknown customer {customer!r}: no meter in {shown(store)} is registered "
                    "or assigned to them"
                )
            return found
        value = parse_pseudonym(pseudonym)
        if stored_counts(db, [value])[value] == 0:
            raise ConfigurationError(
                f"unknown pseudonym {value.hex()}: no reading in {shown(store)} is stored under "
                "it (`meterseal router pseudonym CUSTOMER` prints a customer's)"
            )
        return [MeterPseudonym("", "", value)]


def _whose(row: Any) -> str:
    if not row.customer_id:
        return f"pseudonym {row.pseudonym.hex()}"
    return f"customer {row.customer_id} (meter {row.meter_id}, pseudonym {row.pseudonym.hex()})"


def _consent(
    op: str, customer: str, pseudonym: str, app: str, deployment: Path, store: str,
    keys: Path, url: str, namespace: str,
) -> None:  # fmt: skip
    for row in _meters(customer, pseudonym, deployment, store):
        command = {"op": op, "customer": row.pseudonym, "app": app}
        answer = operator(keys, url, namespace, command)
        rekeyed = ", ".join(answer.get("rekeyed", []))
        if op == "grant":
            what = f"{app} now receives the raw (HIGH) readings of {_whose(row)}"
            what += f"; new keys for {rekeyed}" if rekeyed else f" (once {app} is admitted)"
        else:
            what = f"{app} no longer receives the raw (HIGH) readings of {_whose(row)}"
            what += f"; new keys for {rekeyed or 'nobody'}"
        console.print(f"consent {op}ed: {what}", soft_wrap=True)


@consent_app.command("grant")
def consent_grant(
    app: AppOpt, customer: CustomerOpt = "", pseudonym: PseudonymOpt = "",
    deployment: DeploymentDir = DEFAULT_DEPLOYMENT, store: StoreUrl = DEFAULT_STORE,
    keys: KeysDir = DEFAULT_KEYS, nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """The customer lets APP read their raw (HIGH) data, every meter of theirs, from the next
    publication on. An unknown customer or pseudonym is refused."""
    _consent("grant", customer, pseudonym, app, deployment, store, keys, nats_url, namespace)


@consent_app.command("revoke")
def consent_revoke(
    app: AppOpt, customer: CustomerOpt = "", pseudonym: PseudonymOpt = "",
    deployment: DeploymentDir = DEFAULT_DEPLOYMENT, store: StoreUrl = DEFAULT_STORE,
    keys: KeysDir = DEFAULT_KEYS, nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """The customer withdraws APP's access: routing stops and the customer's key rotates."""
    _consent("revoke", customer, pseudonym, app, deployment, store, keys, nats_url, namespace)


@consent_app.command("list")
def consent_list(
    deployment: DeploymentDir = DEFAULT_DEPLOYMENT, store: StoreUrl = DEFAULT_STORE,
    keys: KeysDir = DEFAULT_KEYS, nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """What each app receives, for which customers (their ids when the deployment's
    anonymization key and the store are at hand)."""
    answer = operator(keys, nats_url, namespace, {"op": "consents"})
    owners = _owners(deployment, store)
    members = answer.get("members", {})
    per_app: dict[str, list[str]] = {}
    for customer, apps in answer.get("consents", []):
        row = owners.get(bytes(customer))
        for app in apps:
            per_app.setdefault(app, []).append(
                _whose(row) if row else f"pseudonym {bytes(customer).hex()}"
            )
    for name, (role, state) in sorted(members.items()):
        console.print(
            f"{name} ({role}, {state}) receives {_RECEIVES.get(role, 'nothing')}", soft_wrap=True
        )
    if not per_app:
        console.print("no consent granted: apps receive LOW (regional) data only")
    for app, whose in sorted(per_app.items()):
        role, state = members.get(app, ("app", "not admitted"))
        when = "" if state == "admitted" else f" (once admitted; now {state})"
        if role != "app":  # only apps receive by consent (levels.GRANTS)
            when = f" (never: {app} is a {role}, not an app)"
        console.print(
            f"{app} receives the raw (HIGH) readings of {len(whose)} pseudonym(s){when}:",
            soft_wrap=True,
        )
        for line in whose:
            console.print(f"  {line}", soft_wrap=True)


# What each role reads (levels.GRANTS), as `consent list` says it.
_RECEIVES = {
    "public_app": "LOW: regional loads (k meters or more)",
    "app": "LOW, and HIGH raw readings of the customers that consented (below)",
    "utility": "MODERATE: each customer's load per frame (hourly by default), and LOW",
    "aggregator": "HIGH: every raw reading (to aggregate)",
    "publisher": "nothing (it publishes HIGH readings)",
}


def _owners(deployment: Path, store: str) -> dict[bytes, Any]:
    """Pseudonym -> customer and meter, or nothing without the key or the store."""
    from meterseal.dissemination.customers import deployment_anonymizer, pseudonym_owners
    from meterseal.errors import MetersealError
    from meterseal.storage import Store

    try:
        anonymizer = deployment_anonymizer(deployment, router_passphrase())
        with Store.open_read_only(store) as db:
            return pseudonym_owners(db, anonymizer)
    except MetersealError:
        return {}  # the list still shows the pseudonyms


def router_pseudonym(
    customer: Annotated[str, typer.Argument(help="the customer's id")],
    deployment: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """The pseudonyms a customer's data is published under (one per meter), with the readings
    stored under each: what `consent grant` and the subscribers' lines name."""
    from meterseal.dissemination.customers import stored_counts
    from meterseal.storage import Store

    rows = _meters(customer, "", deployment, store)
    with Store.open_read_only(store) as db:
        counts = stored_counts(db, [r.pseudonym for r in rows])
    console.print(f"customer {customer}: {len(rows)} meter(s)")
    for row in rows:
        console.print(
            f"  {row.meter_id}  pseudonym {row.pseudonym.hex()}  "
            f"{counts[row.pseudonym]:,} readings stored",
            soft_wrap=True,
        )
    console.print(
        f"next: meterseal router consent grant --customer {customer} --app APP", soft_wrap=True
    )


dissemination_app.add_typer(consent_app, name="consent")
dissemination_app.command("pseudonym")(router_pseudonym)
