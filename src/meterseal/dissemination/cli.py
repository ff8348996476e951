"""`meterseal router …`: the dissemination router on NATS, its clients and its operator."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from meterseal.cli_common import DEFAULT_STORE, console
from meterseal.dissemination.cli_serve import (
    AUTHORITY_KEY,
    AUTHORITY_PUBLIC,
    DEFAULT_DEPLOYMENT,
    DEFAULT_KEYS,
    DEFAULT_NATS,
    OPERATOR_KEY,
    STATE_KEY,
    AuthorityOpt,
    KeysDir,
    MeasurementHex,
    Namespace,
    NatsUrl,
    Platform,
    attested_member,
    authority_public_key,
    operator,
    platform_attester,
    router_aggregate,
    router_passphrase,
    router_provision,
    router_serve,
)
from meterseal.errors import ConfigurationError

dissemination_app = typer.Typer(
    help="Privacy-aware dissemination: the router on NATS, subscribers, consent.",
    no_args_is_help=True,
)
dissemination_app.command("serve")(router_serve)
dissemination_app.command("aggregate")(router_aggregate)
dissemination_app.command("provision")(router_provision)


@dissemination_app.command("init")
def router_init(
    directory: Annotated[Path, typer.Argument()] = DEFAULT_KEYS,
    deployment: Annotated[
        Path,
        typer.Option(
            "--deployment", "-d", help="the deployment whose simulated platform members attest on"
        ),
    ] = DEFAULT_DEPLOYMENT,
) -> None:
    """Create the handout-signing key, operator and state keys (0600; MS_PASSPHRASE encrypts);
    print what members pin and attest with, and the command that serves the router."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from meterseal.crypto.at_rest import private_directory, write_secret_file
    from meterseal.crypto.keys import write_private_key
    from meterseal.trust.attestation import PLATFORM_KEY

    private_directory(directory)
    if (directory / AUTHORITY_KEY).exists():
        raise ConfigurationError(f"{directory} already holds router keys")
    secret = router_passphrase()
    key = ed25519.Ed25519PrivateKey.generate()
    write_private_key(directory / AUTHORITY_KEY, key, secret)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    (directory / AUTHORITY_PUBLIC).write_text(public + "\n")
    write_secret_file(directory / OPERATOR_KEY, os.urandom(32), secret)
    write_secret_file(directory / STATE_KEY, os.urandom(32), secret)
    console.print(
        f"router keys in [bold]{directory}[/bold]; members pin authority key {public}",
        soft_wrap=True,
    )
    console.print(f"members pass --authority {directory / AUTHORITY_PUBLIC}", soft_wrap=True)
    _print_members()
    if not (deployment / PLATFORM_KEY).exists():
        console.print(f"first: meterseal cas init -d {deployment}  (the simulated platform)")
    console.print(
        f"next: meterseal router serve --keys {directory} --platform {deployment} "
        "--allow utility", soft_wrap=True,
    )  # fmt: skip


def _print_members() -> None:
    from meterseal.dissemination.service import DEFAULT_MEMBERS, MEMBER_COMMANDS, member_measurement

    console.print("this checkout's members attest with (router serve admits them as shown):")
    for role, command in MEMBER_COMMANDS.items():
        admitted = "admitted by default" if role in DEFAULT_MEMBERS else f"--allow {role.value}"
        console.print(
            f"  {role.value:10} {member_measurement(role).hex}  {command}  ({admitted})",
            soft_wrap=True,
        )


@dissemination_app.command("members")
def router_members() -> None:
    """This checkout's member measurements: what each `router` member attests with."""
    _print_members()


@dissemination_app.command("subscribe")
def router_subscribe(
    name: str,
    authority: Annotated[str, typer.Option(help="the router's authority.pub (file or hex)")],
    role: Annotated[
        str, typer.Option(help="public_app, app, utility or aggregator")
    ] = "public_app",
    level: Annotated[str, typer.Option(help="low, moderate or high")] = "low",
    where: Annotated[str, typer.Option(help='predicates, e.g. region = "R01"')] = "",
    nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
    platform: Annotated[
        Path | None, typer.Option(help="simulated platform key directory (to attest)")
    ] = None,
    measurement: MeasurementHex = "",
    count: Annotated[int, typer.Option(help="stop after this many publications (0: never)")] = 0,
) -> None:
    """Join as NAME (attested unless a public app) and print what arrives, decrypted."""
    from meterseal.dissemination.levels import PrivacyLevel, Role
    from meterseal.dissemination.member import MemberClient
    from meterseal.dissemination.service import member_measurement
    from meterseal.dissemination.subscription import parse
    from meterseal.trust.measurement import Measurement

    try:
        chosen = Role(role)
        subscription = ((PrivacyLevel.named(level), parse(where)),)
        client = MemberClient(name, chosen, "utility", authority_public_key(authority))
        attester = platform_attester(platform) if platform else None
        identity = (
            Measurement.from_hex(measurement)
            if measurement
            else member_measurement(chosen)
            if platform and chosen is not Role.PUBLIC_APP
            else None
        )
    except (ValueError, KeyError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    asyncio.run(_subscribe(client, subscription, attester, identity, nats_url, namespace, count))


async def _subscribe(
    client: Any, subscription: Any, attester: Any, identity: Any, url: str, ns: str, count: int
) -> None:
    from meterseal.dissemination.errors import CannotDecrypt
    from meterseal.dissemination.nats_transport import NatsMember
    from meterseal.dissemination.wire import pairs
    from meterseal.services.nats_bus import connect_nats

    done = asyncio.Event()
    seen = 0

    async def show(elements: list[bytes]) -> None:
        nonlocal seen
        for item in pairs(elements):
            try:
                delivery = client.open(item)
            except (CannotDecrypt, ValueError) as exc:
                console.print(f"[yellow]cannot open a publication:[/yellow] {exc}")
                continue
            h = delivery.header
            console.print(
                f"{h.level.name:8} {h.type:14} region={h.region or '-':5} "
                f"customer={h.customer.hex()[:12] or '-':12} start={h.start} {delivery.values}",
                soft_wrap=True,  # one line per publication, whatever the terminal width
            )
            seen += 1
            if count and seen >= count:
                done.set()

    nc = await connect_nats(url, max_reconnect_attempts=3)
    member = NatsMember(nc, client, namespace=ns)
    await member.join(subscription, on_delivery=show, attester=attester, measurement=identity)
    console.print(f"admitted as {client.name} ({client.role}); waiting for publications")
    stop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        stop.add_signal_handler(signum, done.set)
    await done.wait()
    await nc.close()


@dissemination_app.command("remove")
def router_remove(
    member: str, keys: KeysDir = DEFAULT_KEYS, nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """Expel MEMBER: its subscriptions go, every key it held is rotated for the others."""
    answer = operator(keys, nats_url, namespace, {"op": "remove", "member": member})
    console.print(f"{member} removed; new keys for {', '.join(answer['rekeyed']) or 'nobody'}")


@dissemination_app.command("status")
def router_status(
    keys: KeysDir = DEFAULT_KEYS, nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """Members (role, state) and the router's counters."""
    answer = operator(keys, nats_url, namespace, {"op": "status"})
    table = Table("member", "role", "state", title="members")
    for name, (role, state) in sorted(answer["members"].items()):
        table.add_row(name, role, state)
    console.print(table)
    console.print(f"counters: {answer['counters']}")


def _moment(text: str, option: str) -> int:
    """Unix seconds from `text`: seconds, or an ISO date (UTC midnight) or date and time."""
    import datetime as dt

    text = text.strip()
    if not text or text.isdigit():
        return int(text or 0)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r}: Unix seconds, a date (2026-10-01) or a date and time", param_hint=option
        ) from exc
    return int((moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp())


class _Tally:
    """What went by: readings, distinct pseudonyms, first and last data time."""

    def __init__(self) -> None:
        self.customers: set[bytes] = set()
        self.first, self.last = 2**63, -1

    def pages(self, pages: Any) -> Any:
        """The same pages, counted on the way."""
        for page in pages:
            for reading in page:
                self.customers.add(reading.pseudonym)
                self.first = min(self.first, reading.timestamp)
                self.last = max(self.last, reading.timestamp)
            yield page

    def span(self) -> str:
        """What was published, for the operator."""
        import datetime as dt

        if self.last < 0:
            return "nothing in that period"
        shown = [dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M") for t in
                 (self.first, self.last)]  # fmt: skip
        return f"{len(self.customers):,} pseudonyms, {shown[0]} to {shown[1]} UTC (data time)"


@dissemination_app.command("publish")
def router_publish(
    authority: AuthorityOpt,
    store: Annotated[str, typer.Option(help="the head-end's store URL")] = DEFAULT_STORE,
    since: Annotated[
        str, typer.Option(help="first reading time: a date (UTC), date and time, or Unix seconds")
    ] = "",
    until: Annotated[str, typer.Option(help="end, exclusive (same forms; default now)")] = "",
    name: Annotated[str, typer.Option(help="member name")] = "headend",
    nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
    platform: Platform = None,
    measurement: MeasurementHex = "",
) -> None:
    """Publish the store's anonymized readings in [since, until) as the HIGH stream, in data
    time (so the aggregator's frames close in order), then leave the router."""
    start, end = _moment(since, "--since"), _moment(until, "--until") or int(time.time()) + 1
    client, attester, identity = attested_member(
        name, "publisher", authority, platform, measurement
    )
    tally = _Tally()
    sent = asyncio.run(
        _publish(client, store, start, end, attester, identity, nats_url, namespace, tally)
    )
    console.print(f"published {sent:,} readings: {tally.span()}", soft_wrap=True)


async def _publish(
    client: Any, store: str, since: int, end: int, attester: Any, identity: Any, url: str, ns: str,
    tally: _Tally,
) -> int:  # fmt: skip
    from meterseal.dissemination.errors import AdmissionRefused, Reason
    from meterseal.dissemination.feed import stored_readings
    from meterseal.dissemination.member import Publisher
    from meterseal.dissemination.nats_transport import NatsMember
    from meterseal.dissemination.runners import publish_readings
    from meterseal.services.nats_bus import connect_nats
    from meterseal.storage import Store

    nc = await connect_nats(url, max_reconnect_attempts=3)
    try:
        member = NatsMember(nc, client, namespace=ns)
        try:
            await member.join(attester=attester, measurement=identity)
        except AdmissionRefused as exc:
            if exc.reason is not Reason.INVALID_TRANSITION:
                raise
            raise ConfigurationError(
                f"a member named {client.name!r} is still admitted at the router (a run that "
                f"did not finish?): `meterseal router remove {client.name}`, or --name another"
            ) from exc
        publisher = Publisher(client.name, client.keys, rng=os.urandom)
        with Store.open_read_only(store) as db:
            pages = tally.pages(stored_readings(db, since, end))
            sent = await publish_readings(member, publisher, pages)
        if member.refused:
            console.print(f"[yellow]refused by the router:[/yellow] {member.refused[:5]}")
        await member.leave()  # a job: the next run is admitted again under the same name
        return sent
    finally:
        await nc.close()
