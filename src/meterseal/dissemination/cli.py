"""`meterseal router …`: the dissemination router as a service on NATS, and its clients."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from meterseal.cli_common import console, fail
from meterseal.errors import ConfigurationError, MetersealError

dissemination_app = typer.Typer(
    help="Privacy-aware dissemination: the router on NATS, subscribers, consent.",
    no_args_is_help=True,
)
consent_app = typer.Typer(help="A customer's consent to an app, per app.", no_args_is_help=True)
dissemination_app.add_typer(consent_app, name="consent")

AUTHORITY_KEY = "authority.key.pem"
AUTHORITY_PUBLIC = "authority.pub"
OPERATOR_KEY = "operator.key"
NatsUrl = Annotated[str, typer.Option("--nats", help="NATS server URL")]
Namespace = Annotated[str, typer.Option(help="subject prefix of this router")]
KeysDir = Annotated[Path, typer.Option("--keys", help="the router's key directory (router init)")]
DEFAULT_NATS = os.environ.get("MS_NATS_URL", "nats://127.0.0.1:4222")
DEFAULT_KEYS = Path("var/router")


@dissemination_app.command("init")
def router_init(directory: Annotated[Path, typer.Argument()] = DEFAULT_KEYS) -> None:
    """Create the publisher's handout-signing key and the operator key (0600)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from meterseal.crypto.keys import write_private_key, write_symmetric_secret

    directory.mkdir(parents=True, exist_ok=True)
    if (directory / AUTHORITY_KEY).exists():
        raise fail(ConfigurationError(f"{directory} already holds router keys"))
    key = ed25519.Ed25519PrivateKey.generate()
    write_private_key(directory / AUTHORITY_KEY, key)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    (directory / AUTHORITY_PUBLIC).write_text(public + "\n")
    write_symmetric_secret(directory / OPERATOR_KEY, os.urandom(32))
    console.print(f"router keys in [bold]{directory}[/bold]; members pin authority key {public}")


def _authority_public(text: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = Path(text)
    value = path.read_text().strip() if path.exists() else text
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))
    except ValueError as exc:
        raise fail(ConfigurationError(f"not an authority key (64 hex digits): {text}")) from exc


def _policy(allow: list[str]) -> Any:
    from meterseal.dissemination.authority import secret_name
    from meterseal.dissemination.levels import GRANTS, Role
    from meterseal.trust.measurement import Measurement
    from meterseal.trust.policy import AllowMeasurement, AnyOf

    rules = []
    for rule in allow:
        role_name, _, digest = rule.partition("=")
        try:
            role = Role(role_name)
            measurement = Measurement.from_hex(digest)
        except (ValueError, MetersealError) as exc:
            raise typer.BadParameter(f"--allow ROLE=MEASUREMENT, not {rule!r}") from exc
        names = frozenset(secret_name(role, lv) for (r, lv) in GRANTS if r is role)
        rules.append(AllowMeasurement(measurement, names, role.value))
    return AnyOf(tuple(rules))


@dissemination_app.command("serve")
def router_serve(
    keys: KeysDir = DEFAULT_KEYS,
    nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
    platform: Annotated[
        Path | None, typer.Option(help="simulated attestation platform (cas init's directory)")
    ] = None,
    allow: Annotated[
        list[str], typer.Option(help="ROLE=MEASUREMENT admitted after attestation; repeat")
    ] = [],  # noqa: B006
) -> None:
    """Run the publisher's admissions and the router on NATS until Ctrl-C or SIGTERM."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from meterseal.crypto.keys import read_private_key, read_symmetric_secret
    from meterseal.dissemination.authority import Authority
    from meterseal.dissemination.node import RouterNode
    from meterseal.dissemination.router import Router
    from meterseal.trust.attestation import SimulatedVerifier

    try:
        signing = read_private_key(keys / AUTHORITY_KEY)
        operator = read_symmetric_secret(keys / OPERATOR_KEY)
        verifier = SimulatedVerifier.from_deployment(platform) if platform else None
    except (MetersealError, OSError) as exc:
        error = exc if isinstance(exc, MetersealError) else ConfigurationError(str(exc))
        raise fail(error) from exc
    if not isinstance(signing, ed25519.Ed25519PrivateKey):
        raise fail(ConfigurationError(f"{keys / AUTHORITY_KEY} is not an Ed25519 key"))
    router = Router()
    authority = Authority("utility", signing, verifier, _policy(allow), router, rng=os.urandom)
    node = RouterNode(authority, router, operator, os.urandom, namespace=namespace)
    if verifier is None:
        console.print("no --platform: only public apps (LOW) can be admitted")
    else:
        console.print(f"attestation: {verifier!r}")
    try:
        asyncio.run(_serve(node, nats_url))
    except OSError as exc:
        raise fail(ConfigurationError(f"cannot reach NATS at {nats_url}: {exc}")) from exc


async def _serve(node: Any, url: str) -> None:
    import nats

    from meterseal.dissemination.nats_transport import serve_node

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=3)
    await serve_node(nc, node)
    print(f"listening router {url} {node.namespace}", flush=True)  # scripts wait for this line
    await stop.wait()
    console.print(f"router counters: {dict(node.router.counters)}")
    await nc.close()


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
    measurement: Annotated[str, typer.Option(help="this worker's measurement (hex)")] = "",
    count: Annotated[int, typer.Option(help="stop after this many publications (0: never)")] = 0,
) -> None:
    """Join as NAME (attested unless a public app) and print what arrives, decrypted."""
    from meterseal.dissemination.levels import PrivacyLevel, Role
    from meterseal.dissemination.member import MemberClient
    from meterseal.dissemination.subscription import parse
    from meterseal.trust.attestation import SimulatedAttester
    from meterseal.trust.measurement import Measurement

    try:
        chosen = Role(role)
        subscription = ((PrivacyLevel.named(level), parse(where)),)
        client = MemberClient(name, chosen, "utility", _authority_public(authority))
        attester = SimulatedAttester.from_deployment(platform) if platform else None
        identity = Measurement.from_hex(measurement) if measurement else None
    except (ValueError, KeyError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    except MetersealError as exc:
        raise fail(exc) from exc
    try:
        asyncio.run(
            _subscribe(client, subscription, attester, identity, nats_url, namespace, count)
        )
    except MetersealError as exc:
        raise fail(exc) from exc


async def _subscribe(
    client: Any, subscription: Any, attester: Any, identity: Any, url: str, ns: str, count: int
) -> None:
    import nats

    from meterseal.dissemination.errors import CannotDecrypt
    from meterseal.dissemination.nats_transport import NatsMember

    done = asyncio.Event()
    seen = 0

    async def show(items: list[Any]) -> None:
        nonlocal seen
        for item in items:
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

    nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=3)
    member = NatsMember(nc, client, namespace=ns)
    await member.join(subscription, on_delivery=show, attester=attester, measurement=identity)
    console.print(f"admitted as {client.name} ({client.role}); waiting for publications")
    stop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        stop.add_signal_handler(signum, done.set)
    await done.wait()
    await nc.close()


def _operator(keys: Path, url: str, namespace: str, command: dict[str, Any]) -> dict[str, Any]:
    from meterseal.crypto.keys import read_symmetric_secret
    from meterseal.dissemination.nats_transport import operator_request
    from meterseal.dissemination.node import operator_command

    try:
        secret = read_symmetric_secret(keys / OPERATOR_KEY)
    except MetersealError as exc:
        raise fail(exc) from exc
    signed = operator_command(secret, command, now=time.time(), nonce=os.urandom(16))

    async def send() -> dict[str, Any]:
        import nats

        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0)
        try:
            return await operator_request(nc, signed, namespace=namespace)
        finally:
            await nc.close()

    try:
        answer = asyncio.run(send())
    except Exception as exc:
        raise fail(ConfigurationError(f"no router answered on {url} ({namespace}): {exc}")) from exc
    if not answer.get("ok"):
        console.print(f"[red]refused:[/red] {answer.get('reason')}: {answer.get('detail', '')}")
        raise typer.Exit(code=1)
    return answer


def _consent(op: str, customer: str, app: str, keys: Path, url: str, namespace: str) -> None:
    try:
        pseudonym = bytes.fromhex(customer)
    except ValueError as exc:
        raise typer.BadParameter("--customer is the customer's pseudonym in hex") from exc
    answer = _operator(keys, url, namespace, {"op": op, "customer": pseudonym, "app": app})
    rekeyed = ", ".join(answer.get("rekeyed", [])) or "nobody"
    console.print(f"consent {op}ed: {app} for customer {customer}; new keys for {rekeyed}")


CustomerOpt = Annotated[str, typer.Option("--customer", help="the customer's pseudonym (hex)")]
AppOpt = Annotated[str, typer.Option("--app", help="the app's member name")]


@consent_app.command("grant")
def consent_grant(
    customer: CustomerOpt, app: AppOpt, keys: KeysDir = DEFAULT_KEYS,
    nats_url: NatsUrl = DEFAULT_NATS, namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """The customer lets APP read its raw (HIGH) data from the next publication on."""
    _consent("grant", customer, app, keys, nats_url, namespace)


@consent_app.command("revoke")
def consent_revoke(
    customer: CustomerOpt, app: AppOpt, keys: KeysDir = DEFAULT_KEYS,
    nats_url: NatsUrl = DEFAULT_NATS, namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """The customer withdraws APP's access: routing stops and the customer's key rotates."""
    _consent("revoke", customer, app, keys, nats_url, namespace)


@dissemination_app.command("remove")
def router_remove(
    member: str, keys: KeysDir = DEFAULT_KEYS, nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """Expel MEMBER: its subscriptions go, every key it held is rotated for the others."""
    answer = _operator(keys, nats_url, namespace, {"op": "remove", "member": member})
    console.print(f"{member} removed; new keys for {', '.join(answer['rekeyed']) or 'nobody'}")


@dissemination_app.command("status")
def router_status(
    keys: KeysDir = DEFAULT_KEYS, nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
) -> None:  # fmt: skip
    """Members (role, state) and the router's counters."""
    answer = _operator(keys, nats_url, namespace, {"op": "status"})
    table = Table("member", "role", "state", title="members")
    for name, (role, state) in sorted(answer["members"].items()):
        table.add_row(name, role, state)
    console.print(table)
    console.print(f"counters: {answer['counters']}")


Platform = Annotated[
    Path | None, typer.Option(help="simulated platform key directory (to attest this member)")
]
MeasurementHex = Annotated[str, typer.Option(help="this worker's measurement (64 hex digits)")]
AuthorityOpt = Annotated[str, typer.Option(help="the router's authority.pub (file or hex)")]


def _attested(name: str, role: str, authority: str, platform: Path | None, digest: str) -> Any:
    """(client, attester, measurement) of an attested member, or a clean exit."""
    from meterseal.dissemination.levels import Role
    from meterseal.dissemination.member import MemberClient
    from meterseal.trust.attestation import SimulatedAttester
    from meterseal.trust.measurement import Measurement

    if platform is None or not digest:
        raise typer.BadParameter("an attested member needs --platform and --measurement")
    try:
        client = MemberClient(name, Role(role), "utility", _authority_public(authority))
        return client, SimulatedAttester.from_deployment(platform), Measurement.from_hex(digest)
    except MetersealError as exc:
        raise fail(exc) from exc


@dissemination_app.command("aggregate")
def router_aggregate(
    authority: AuthorityOpt,
    name: Annotated[str, typer.Option(help="member name")] = "aggregator",
    frame: Annotated[str, typer.Option(help="MODERATE frame: 15m, 1h, 1d, 1mo")] = "1h",
    low_frame: Annotated[str, typer.Option(help="LOW frame")] = "1h",
    k: Annotated[int, typer.Option(help="least meters in a regional release")] = 5,
    lateness: Annotated[int, typer.Option(help="seconds a frame waits for late readings")] = 900,
    epsilon: Annotated[float, typer.Option(help="DP epsilon per LOW frame (0: no noise)")] = 0.0,
    clamp_wh: Annotated[int, typer.Option(help="DP: a meter's most Wh per LOW frame")] = 10_000,
    budget: Annotated[float, typer.Option(help="DP: total epsilon before LOW stops")] = 10.0,
    nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
    platform: Platform = None,
    measurement: MeasurementHex = "",
) -> None:
    """Run the aggregator: HIGH readings in, MODERATE and LOW releases out, until Ctrl-C."""
    from meterseal.dissemination.aggregator import AggregationPolicy
    from meterseal.dissemination.privacy import DifferentialPrivacy
    from meterseal.dissemination.timeframe import Frame

    try:
        policy = AggregationPolicy(
            Frame.parse(frame), Frame.parse(low_frame), k, lateness,
            DifferentialPrivacy.laplace(epsilon, clamp_wh, budget) if epsilon > 0 else None,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    client, attester, identity = _attested(name, "aggregator", authority, platform, measurement)
    try:
        asyncio.run(_aggregate(client, policy, attester, identity, nats_url, namespace))
    except MetersealError as exc:
        raise fail(exc) from exc


async def _aggregate(
    client: Any, policy: Any, attester: Any, identity: Any, url: str, ns: str
) -> None:
    import nats

    from meterseal.dissemination.aggregator import Aggregator
    from meterseal.dissemination.levels import PrivacyLevel
    from meterseal.dissemination.member import Publisher
    from meterseal.dissemination.nats_transport import NatsMember
    from meterseal.dissemination.runners import AggregatorService, until_signalled
    from meterseal.dissemination.subscription import Subscription

    nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=3)
    member = NatsMember(nc, client, namespace=ns)
    aggregator = Aggregator(client, Publisher(client.name, client.keys, rng=os.urandom), policy)
    service = AggregatorService(member, aggregator)
    await member.join(
        ((PrivacyLevel.HIGH, Subscription()),),
        on_delivery=service.deliver, attester=attester, measurement=identity,
    )  # fmt: skip
    console.print(f"aggregating as {client.name} (attested; {policy.moderate.text()} frames)")
    await until_signalled()
    await service.finish(flush=False)
    counts = dict(aggregator.aggregation.counters + aggregator.counters)
    console.print(f"released {service.released} publications; {counts}")
    await nc.close()


@dissemination_app.command("publish")
def router_publish(
    authority: AuthorityOpt,
    store: Annotated[str, typer.Option(help="the head-end's store URL")],
    since: Annotated[int, typer.Option(help="first reading time (Unix seconds)")] = 0,
    until: Annotated[int, typer.Option(help="end (exclusive; 0: now)")] = 0,
    name: Annotated[str, typer.Option(help="member name")] = "headend",
    nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
    platform: Platform = None,
    measurement: MeasurementHex = "",
) -> None:
    """Publish the store's anonymized readings in [since, until) as the HIGH stream."""
    client, attester, identity = _attested(name, "publisher", authority, platform, measurement)
    end = until or int(time.time()) + 1
    try:
        sent = asyncio.run(
            _publish(client, store, since, end, attester, identity, nats_url, namespace)
        )
    except MetersealError as exc:
        raise fail(exc) from exc
    console.print(f"published {sent} readings")


async def _publish(
    client: Any, store: str, since: int, end: int, attester: Any, identity: Any, url: str, ns: str
) -> int:
    import nats

    from meterseal.dissemination.feed import stored_readings
    from meterseal.dissemination.member import Publisher
    from meterseal.dissemination.nats_transport import NatsMember
    from meterseal.dissemination.runners import publish_readings
    from meterseal.storage import Store

    nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=3)
    try:
        member = NatsMember(nc, client, namespace=ns)
        await member.join(attester=attester, measurement=identity)
        publisher = Publisher(client.name, client.keys, rng=os.urandom)
        with Store.open_read_only(store) as db:
            sent = await publish_readings(member, publisher, stored_readings(db, since, end))
        if member.refused:
            console.print(f"[yellow]refused by the router:[/yellow] {member.refused[:5]}")
        return sent
    finally:
        await nc.close()
