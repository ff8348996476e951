"""`meterseal router serve | aggregate | provision`: the router and the aggregator as services
(under the runtime's lifecycle), their keys from files or, as attested workers, from the CAS."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from meterseal.cli_common import DEFAULT_STORE, console, option_source, passphrase
from meterseal.crypto.at_rest import PASSPHRASE_VARIABLE
from meterseal.errors import ConfigurationError, MetersealError
from meterseal.runtime.nats_endpoint import shown

AUTHORITY_KEY = "authority.key.pem"
AUTHORITY_PUBLIC = "authority.pub"
OPERATOR_KEY = "operator.key"
STATE_KEY = "state.key"
NatsUrl = Annotated[str, typer.Option("--nats", help="NATS server URL")]
Namespace = Annotated[str, typer.Option(help="subject prefix of this router")]
KeysDir = Annotated[Path, typer.Option("--keys", help="the router's key directory (router init)")]
DEFAULT_NATS = os.environ.get("MS_NATS_URL", "nats://127.0.0.1:4222")
DEFAULT_KEYS = Path("var/router")


def authority_public_key(text: str) -> Any:
    """The publisher's Ed25519 public key from a file or 64 hex digits (or a clean exit)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = Path(text)
    value = path.read_text().strip() if path.exists() else text
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))
    except ValueError as exc:
        raise ConfigurationError(f"not an authority key (64 hex digits): {text}") from exc


def _allow(allow: list[str]) -> list[Any]:
    """(role, measurement) pairs from --allow ROLE[=MEASUREMENT] options (ROLE alone: this
    checkout's member of that role, as `router init` lists them)."""
    from meterseal.dissemination.levels import Role
    from meterseal.dissemination.service import member_measurement
    from meterseal.trust.measurement import Measurement

    rules = []
    for rule in allow:
        role_name, _, digest = rule.partition("=")
        try:
            role = Role(role_name)
            chosen = Measurement.from_hex(digest) if digest else member_measurement(role)
            rules.append((role, chosen))
        except (ValueError, MetersealError) as exc:
            roles = ", ".join(r.value for r in Role if r is not Role.PUBLIC_APP)
            raise typer.BadParameter(
                f"--allow ROLE or ROLE=MEASUREMENT (ROLE: {roles}), not {rule!r}"
            ) from exc
    return rules


def router_passphrase() -> bytes | None:
    """The passphrase of the router's key files and the simulated platform (MS_PASSPHRASE)."""
    return passphrase(PASSPHRASE_VARIABLE)


def _file_keys(keys: Path, secret: bytes | None) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from meterseal.crypto.at_rest import read_secret_file
    from meterseal.crypto.keys import read_private_key
    from meterseal.dissemination.service import RouterKeys

    try:
        signing = read_private_key(keys / AUTHORITY_KEY, secret)
        operator = read_secret_file(keys / OPERATOR_KEY, secret)
        state_key = (
            read_secret_file(keys / STATE_KEY, secret) if (keys / STATE_KEY).exists() else None
        )
    except OSError as exc:
        raise ConfigurationError(str(exc)) from exc
    if not isinstance(signing, ed25519.Ed25519PrivateKey):
        raise ConfigurationError(f"{keys / AUTHORITY_KEY} is not an Ed25519 key")
    return RouterKeys(signing, operator, state_key, provenance=f"key files in {keys}")


CasUrl = Annotated[
    str | None,
    typer.Option("--cas", help="trusted mode: attest and fetch the keys from this CAS"),
]
Deployment = Annotated[
    Path,
    typer.Option("--deployment", "-d", help="trusted mode: the CAS's deployment directory"),
]
Admin = Annotated[str, typer.Option(help="admin endpoint (health, metrics) address, or 'off'")]
DEFAULT_DEPLOYMENT = Path("var/deployment")


def _run_stage(stage: Any, admin: str, after: Any = None) -> None:
    from meterseal.runtime.lifecycle import run_main, serve_stage

    async def main() -> None:
        await serve_stage(stage, admin=None if admin == "off" else admin)

    code = run_main(main)
    if after is not None:
        after()
    raise typer.Exit(code=code)


def router_serve(
    keys: KeysDir = DEFAULT_KEYS,
    nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
    platform: Annotated[
        Path | None, typer.Option(help="simulated attestation platform (cas init's directory)")
    ] = None,
    allow: Annotated[
        list[str],
        typer.Option(
            help="ROLE (this checkout's member, see `router init`) or ROLE=MEASUREMENT admitted "
            "after attestation, besides this checkout's publisher and aggregator; repeat"
        ),
    ] = [],  # noqa: B006
    cas_url: CasUrl = None,
    deployment: Deployment = DEFAULT_DEPLOYMENT,
    state: Annotated[
        Path | None, typer.Option(help="file keeping consent and key epochs across restarts")
    ] = None,
    admin: Admin = "127.0.0.1:0",
) -> None:
    """Run the publisher's admissions and the router on NATS until Ctrl-C or SIGTERM.

    It admits this checkout's publisher (`router publish`) and aggregator (`router
    aggregate`) and whatever --allow adds, e.g. --allow utility for `router subscribe --role
    utility`. With --cas it is an attested trusted worker: it measures itself (its admission
    rules included), attests and gets its keys from the CAS. Without, its keys are --keys's
    files.
    """
    from meterseal.dissemination.service import (
        RouterService,
        StateFile,
        build_node,
        default_allow,
        router_keys_from_cas,
    )
    from meterseal.trust.attestation import SimulatedVerifier

    secret = router_passphrase()
    rules = list(dict.fromkeys([*default_allow(), *_allow(allow)]))
    try:
        if cas_url is not None:
            router_keys = router_keys_from_cas(cas_url, deployment, rules, passphrase=secret)
            platform = platform or deployment
        else:
            router_keys = _file_keys(keys, secret)
        verifier = SimulatedVerifier.from_deployment(platform) if platform else None
        node = build_node(
            router_keys, verifier, rules, StateFile(state, router_keys.state_key),
            namespace=namespace, now=time.time(),
        )  # fmt: skip
    except OSError as exc:
        raise ConfigurationError(str(exc)) from exc
    note = Console(stderr=True)  # stdout carries the parseable `listening`/`ready` lines
    note.print(f"router keys: {router_keys.provenance}", soft_wrap=True)
    note.print(f"attestation: {verifier!r}" if verifier else "no --platform: LOW members only")
    admitted = ", ".join(f"{role.value}={m.short}" for role, m in rules)
    note.print(f"admits after attestation: {admitted}", soft_wrap=True)
    if state is None:
        note.print("no --state: consent lives in memory only")
    _run_stage(RouterService(node, nats_url), admin)


Platform = Annotated[
    Path | None, typer.Option(help="simulated platform key directory (to attest this member)")
]
MeasurementHex = Annotated[
    str,
    typer.Option(
        help="expert: the measurement to attest with (64 hex digits); default this checkout's "
        "for the role, as `router init` lists it"
    ),
]
AuthorityOpt = Annotated[str, typer.Option(help="the router's authority.pub (file or hex)")]


def attested_member(
    name: str, role: str, authority: str, platform: Path | None, digest: str
) -> Any:
    """(client, attester, measurement) of an attested member, or a clean exit."""
    from meterseal.dissemination.levels import Role
    from meterseal.dissemination.member import MemberClient
    from meterseal.dissemination.service import member_measurement
    from meterseal.trust.measurement import Measurement

    if platform is None:
        raise typer.BadParameter(
            "an attested member needs --platform (the simulated platform: `cas init`'s directory)"
        )
    chosen = Role(role)
    client = MemberClient(name, chosen, "utility", authority_public_key(authority))
    attester = platform_attester(platform)
    return client, attester, Measurement.from_hex(digest) if digest else member_measurement(chosen)


def platform_attester(platform: Path) -> Any:
    """The simulated platform's attester in `platform`, or a clean ConfigurationError."""
    from meterseal.trust.attestation import PLATFORM_KEY, SimulatedAttester

    if not (platform / PLATFORM_KEY).exists():
        raise ConfigurationError(
            f"no simulated platform in {platform}: run `meterseal cas init -d {platform}` "
            "or pass --platform"
        )
    return SimulatedAttester.from_deployment(platform, router_passphrase())


Lateness = Annotated[
    int,
    typer.Option(
        help="seconds a frame stays open after its end; a reading for a frame already closed "
        "is dropped and counted as late"
    ),
]


def router_aggregate(
    ctx: typer.Context,
    authority: Annotated[
        str, typer.Option(help="the router's authority.pub (file or hex); not with --cas")
    ] = "",
    name: Annotated[str, typer.Option(help="member name")] = "aggregator",
    frame: Annotated[str, typer.Option(help="MODERATE frame: 15m, 1h, 1d, 1mo")] = "1h",
    low_frame: Annotated[str, typer.Option(help="LOW frame")] = "1h",
    k: Annotated[int, typer.Option(help="least meters in a regional release")] = 5,
    lateness: Lateness = 900,
    epsilon: Annotated[float, typer.Option(help="DP epsilon per LOW frame (0: no noise)")] = 0.0,
    clamp_wh: Annotated[int, typer.Option(help="DP: a meter's most Wh per LOW frame")] = 10_000,
    budget: Annotated[float, typer.Option(help="DP: total epsilon before LOW stops")] = 10.0,
    nats_url: NatsUrl = DEFAULT_NATS,
    namespace: Namespace = "ms.dissem",
    platform: Platform = None,
    measurement: MeasurementHex = "",
    cas_url: CasUrl = None,
    deployment: Deployment = DEFAULT_DEPLOYMENT,
    admin: Admin = "127.0.0.1:0",
    report_every: Annotated[
        float, typer.Option(help="seconds between progress lines on stderr (0: none)")
    ] = 5.0,
) -> None:
    """Run the aggregator: HIGH readings in, MODERATE and LOW releases out, until Ctrl-C.

    Every --report-every seconds it prints its counts on stderr, readings dropped as late
    included (with a warning as soon as any are): a reading is late when its frame has
    closed, i.e. a reading --lateness seconds or more past that frame's end had arrived.

    With --cas it is an attested trusted worker: it measures itself, attests, and gets its
    aggregation policy and the router's public key from the CAS (the policy options here
    are then ignored), then joins the router attested with that same measurement.
    """
    from meterseal.dissemination.levels import Role
    from meterseal.dissemination.member import MemberClient
    from meterseal.dissemination.service import AggregatorStage, aggregator_from_cas

    if cas_url is not None:
        setup = aggregator_from_cas(cas_url, deployment, passphrase=router_passphrase())
        client = MemberClient(name, Role.AGGREGATOR, "utility", setup.authority)
        policy, attester, identity = setup.policy, setup.attester, setup.measurement
        Console(stderr=True).print(f"aggregator: {setup.provenance}", soft_wrap=True)
        ignored = given_on_command_line(ctx, POLICY_OPTIONS)
        if ignored:  # an operator's --k 2 silently running as the CAS's k=5 misleads
            Console(stderr=True).print(
                f"warning: {', '.join(ignored)} ignored: with --cas the CAS's aggregation "
                f"policy applies (k={policy.k}, lateness {policy.lateness} s); change it with "
                f"meterseal router provision {' '.join(f'{o} …' for o in ignored)}",
                soft_wrap=True,
                markup=False,
            )
    else:
        policy = _aggregation_policy(frame, low_frame, k, lateness, epsilon, clamp_wh, budget)
        client, attester, identity = attested_member(
            name, "aggregator", authority, platform, measurement
        )
    note = Console(stderr=True)  # stdout carries the parseable `listening`/`ready` lines
    stage = AggregatorStage(
        client, policy, attester, identity, nats_url, namespace,
        report=lambda line: note.print(line, soft_wrap=True), report_every=report_every,
    )  # fmt: skip

    def summary() -> None:
        counts = stage.counters()["aggregator"]
        note.print(f"released {counts.pop('released')} publications; {counts}", soft_wrap=True)

    _run_stage(stage, admin, after=summary)


# The aggregator's policy options: under --cas the CAS's policy sets them instead.
POLICY_OPTIONS = ("frame", "low_frame", "k", "lateness", "epsilon", "clamp_wh", "budget")


def given_on_command_line(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The options among `names` the operator gave (flag or variable), as --option names."""
    given = {"COMMANDLINE", "ENVIRONMENT"}
    return ["--" + n.replace("_", "-") for n in names if option_source(ctx, n) in given]


def _aggregation_policy(
    frame: str, low_frame: str, k: int, lateness: int, epsilon: float, clamp_wh: int,
    budget: float,
) -> Any:  # fmt: skip
    from meterseal.dissemination.aggregator import AggregationPolicy
    from meterseal.dissemination.privacy import DifferentialPrivacy
    from meterseal.dissemination.timeframe import Frame

    try:
        return AggregationPolicy(
            Frame.parse(frame), Frame.parse(low_frame), k, lateness,
            DifferentialPrivacy.laplace(epsilon, clamp_wh, budget) if epsilon > 0 else None,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def router_provision(
    keys: KeysDir = DEFAULT_KEYS,
    deployment: Annotated[
        Path, typer.Option("--deployment", "-d", help="the CAS's directory (cas init)")
    ] = DEFAULT_DEPLOYMENT,
    store: Annotated[str, typer.Option("--store", help="the CAS's store URL")] = DEFAULT_STORE,
    allow: Annotated[
        list[str], typer.Option(help="ROLE=MEASUREMENT the router admits besides the aggregator")
    ] = [],  # noqa: B006
    frame: Annotated[str, typer.Option(help="aggregator: MODERATE frame")] = "1h",
    low_frame: Annotated[str, typer.Option(help="aggregator: LOW frame")] = "1h",
    k: Annotated[int, typer.Option(help="aggregator: least meters in a LOW release")] = 5,
    lateness: Lateness = 900,
    epsilon: Annotated[float, typer.Option(help="aggregator: DP epsilon (0: none)")] = 0.0,
    clamp_wh: Annotated[int, typer.Option(help="aggregator: DP clamp (Wh)")] = 10_000,
    budget: Annotated[float, typer.Option(help="aggregator: DP total epsilon")] = 10.0,
    passphrase_env: Annotated[
        str, typer.Option(help="variable holding the key passphrase (unset: keys unencrypted)")
    ] = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Put the router's and aggregator's secrets in the CAS; allow this checkout's to fetch them.

    Run after `cas init` and `router init`; prints the measurements it allowed.
    """
    from meterseal.dissemination.provision import provision_dissemination
    from meterseal.storage import Store
    from meterseal.trust.cas import Cas
    from meterseal.trust.cas_store import CasStore
    from meterseal.trust.vault import Vault

    policy = _aggregation_policy(frame, low_frame, k, lateness, epsilon, clamp_wh, budget)
    secret = passphrase(passphrase_env)
    router_keys = _file_keys(keys, secret)
    with Store.open(store) as db:
        vault = Vault.from_deployment(deployment, secret)
        done = provision_dissemination(
            Cas(CasStore(db), vault, []), signing_key=router_keys.signing,
            operator_key=router_keys.operator, policy=policy, allow=_allow(allow),
            rng=os.urandom,
        )  # fmt: skip
    for name, version in sorted(done.versions.items()):
        console.print(f"{name}: v{version}")
    console.print(f"allowed dissemination-router {done.router.hex}", soft_wrap=True)
    console.print(f"allowed dissemination-aggregator {done.aggregator.hex}", soft_wrap=True)
    console.print(f"the router admits: {', '.join(r.value for r, _ in done.allow)}")


def operator(keys: Path, url: str, namespace: str, command: dict[str, Any]) -> dict[str, Any]:
    """Send one operator command to the router; its answer, or a clean exit."""
    from meterseal.crypto.at_rest import read_secret_file
    from meterseal.dissemination.nats_transport import operator_request
    from meterseal.dissemination.node import operator_command

    secret = read_secret_file(keys / OPERATOR_KEY, router_passphrase())
    signed = operator_command(secret, command, now=time.time(), nonce=os.urandom(16))

    async def send() -> dict[str, Any]:
        from meterseal.services.nats_bus import connect_nats

        nc = await connect_nats(url, max_reconnect_attempts=1)
        try:
            return await operator_request(nc, signed, namespace=namespace)
        finally:
            await nc.close()

    try:
        answer = asyncio.run(send())
    except Exception as exc:
        where = f"{shown(url)} ({namespace})"
        raise ConfigurationError(f"no router answered on {where}: {exc}") from exc
    if not answer.get("ok"):
        console.print(f"[red]refused:[/red] {answer.get('reason')}: {answer.get('detail', '')}")
        raise typer.Exit(code=1)
    return answer
