"""The router and the aggregator as services: the runtime's lifecycle and metrics, and their
keys from files or, as attested trusted workers, from the CAS.

Trusted mode, like `meterseal serve --mode trusted`: before touching any data the process
measures its stage (`dissemination-router` or `dissemination-aggregator`, see
`trust.measurement.STAGE_MODULES`), has the platform quote that measurement, a CAS nonce and
an ephemeral key, and fetches exactly its stage's secrets (`ROUTER_SECRETS`,
`AGGREGATOR_SECRETS`); a changed worker gets nothing and exits 2 with the CAS's reason.

* The router gets the group-key roots (`group-key/LEVEL`: epoch masters are derived, see
  `groupkeys`), the publisher's handout-signing key, the operator key and the state key.
  Its measured configuration is its admission rules (`router_config`), so the CAS releases
  the group keys only to a router that admits the member measurements the operator allowed.
* The aggregator gets its aggregation policy (frames, k, differential privacy) and the
  publisher's public key: who may run it with which privacy parameters is decided in the
  CAS, not on its command line; then it attests to the router with the same measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives.asymmetric import ed25519

from meterseal.dissemination.aggregator import AggregationPolicy, Aggregator
from meterseal.dissemination.authority import Authority, secret_name
from meterseal.dissemination.groupkeys import Keyring, cas_secret_name, keyring_from_secrets
from meterseal.dissemination.levels import GRANTS, PrivacyLevel, Role
from meterseal.dissemination.member import MemberClient, Publisher
from meterseal.dissemination.node import RouterNode
from meterseal.dissemination.privacy import DifferentialPrivacy
from meterseal.dissemination.router import Router
from meterseal.dissemination.state import (
    RouterState,
    load_sealed,
    open_state,
    seal_state,
    store_sealed,
)
from meterseal.dissemination.subscription import Subscription
from meterseal.dissemination.timeframe import Frame
from meterseal.errors import ConfigurationError
from meterseal.runtime.metrics import ServiceMetrics
from meterseal.runtime.nats_endpoint import shown
from meterseal.runtime.readiness import Readiness
from meterseal.trust.attestation import Attester, QuoteVerifier
from meterseal.trust.measurement import STAGE_MODULES, Measurement, measure, stage_measurement
from meterseal.trust.policy import AllowMeasurement, AnyOf, Policy
from meterseal.trust.worker import start_trusted

ROUTER_STAGE: Final = "dissemination-router"
AGGREGATOR_STAGE: Final = "dissemination-aggregator"
GROUP_KEYS: Final = tuple(cas_secret_name(level) for level in PrivacyLevel)
AUTHORITY_KEY: Final = "dissemination/authority-key"  # Ed25519 private key, raw 32 bytes
OPERATOR_KEY: Final = "dissemination/operator-key"
STATE_KEY: Final = "dissemination/state-key"
AUTHORITY_PUBLIC: Final = "dissemination/authority-public"  # raw 32 bytes
AGGREGATOR_POLICY: Final = "dissemination/aggregator-policy"  # canonical CBOR, see below
ROUTER_SECRETS: Final = (*GROUP_KEYS, AUTHORITY_KEY, OPERATOR_KEY, STATE_KEY)
AGGREGATOR_SECRETS: Final = (AUTHORITY_PUBLIC, AGGREGATOR_POLICY)
Allow = tuple[Role, Measurement]


def admission_policy(allow: Iterable[Allow]) -> Policy:
    """Fail-closed: each (role, measurement) may have that role's keys, nothing else may."""
    rules = []
    for role, measurement in allow:
        names = frozenset(secret_name(role, lv) for (r, lv) in GRANTS if r is role)
        rules.append(AllowMeasurement(measurement, names, role.value))
    return AnyOf(tuple(rules))


MEMBER_STAGE: Final = "dissemination-member"
# Members `meterseal router` runs, and the command that runs each as that role.
MEMBER_COMMANDS: Final = {
    Role.PUBLISHER: "router publish",
    Role.AGGREGATOR: "router aggregate",
    Role.UTILITY: "router subscribe --role utility",
    Role.APP: "router subscribe --role app",
}
DEFAULT_MEMBERS: Final = (Role.PUBLISHER, Role.AGGREGATOR)  # the data path; readers: --allow


@functools.cache
def member_measurement(role: Role) -> Measurement:
    """This checkout's code identity as a member of `role`: what `meterseal router` attests
    with unless told otherwise, and what `--allow ROLE` admits.

    The aggregator's is its trusted stage's (the CAS and the router agree on it); the other
    members run the same package, so they measure its modules under their role's name.
    """
    if role is Role.AGGREGATOR:
        return stage_measurement(AGGREGATOR_STAGE)
    return measure(STAGE_MODULES[AGGREGATOR_STAGE], {"stage": MEMBER_STAGE, "role": role.value})


def default_allow() -> list[Allow]:
    """This checkout's publisher and aggregator, which a router admits unless told otherwise."""
    return [(role, member_measurement(role)) for role in DEFAULT_MEMBERS]


def router_config(allow: Iterable[Allow]) -> dict[str, object]:
    """The router's measured configuration: whom it admits after attestation."""
    return {"allow": sorted([role.value, m.hex] for role, m in allow)}


# -- the router's keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterKeys:
    """What the router holds: signing and operator keys, state key, group-key roots."""

    signing: ed25519.Ed25519PrivateKey
    operator: bytes
    state_key: bytes | None
    roots: dict[str, bytes] = field(default_factory=dict, repr=False)
    versions: dict[str, int] = field(default_factory=dict)
    provenance: str = ""

    def keyring(self, recorded: Mapping[PrivacyLevel, int], *, now: float) -> Keyring:
        """Masters derived from the CAS's roots (epochs past `recorded`), or fresh ones."""
        if not self.roots:
            return Keyring(os.urandom)
        return keyring_from_secrets(
            self.roots, os.urandom, versions=self.versions, counter=int(now * 1000),
            after=recorded,
        )  # fmt: skip


def router_keys_from_cas(
    cas_url: str,
    deployment: Path,
    allow: Iterable[Allow],
    *,
    attester: Attester | None = None,
    passphrase: bytes | None = None,
) -> RouterKeys:
    """Measure the router (with its admission rules), attest, fetch ROUTER_SECRETS."""
    worker = start_trusted(
        ROUTER_STAGE, cas_url, deployment, names=ROUTER_SECRETS, config=router_config(allow),
        attester=attester, passphrase=passphrase,
    )  # fmt: skip
    got = worker.secrets
    for name in (OPERATOR_KEY, STATE_KEY):
        if len(got.get(name, b"")) < 32:
            raise ConfigurationError(f"the CAS released no usable {name}")
    return RouterKeys(
        _signing_key(got.get(AUTHORITY_KEY, b"")),
        got[OPERATOR_KEY],
        got[STATE_KEY],
        {name: got[name] for name in GROUP_KEYS},
        {name: worker.versions[name] for name in GROUP_KEYS},
        f"CAS {cas_url}, measurement {worker.measurement.short}, {worker.assurance}",
    )


def _signing_key(raw: bytes) -> ed25519.Ed25519PrivateKey:
    try:
        return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{AUTHORITY_KEY} is not a raw Ed25519 key") from exc


class StateFile:
    """The router's sealed state at `path` (none: consent lives in memory only)."""

    def __init__(self, path: Path | None, key: bytes | None) -> None:
        if path is not None and key is None:
            raise ConfigurationError("a state file needs a state key")
        self.path, self.key = path, key
        self.saved = 0

    def load(self) -> RouterState:
        """The recorded state, or an empty one."""
        if self.path is None or self.key is None:
            return RouterState()
        sealed = load_sealed(self.path)
        return RouterState() if sealed is None else open_state(sealed, self.key)

    def save(self, state: RouterState) -> None:
        """Seal and write `state` (nothing without a path)."""
        if self.path is not None and self.key is not None:
            store_sealed(self.path, seal_state(state, self.key, os.urandom))
            self.saved += 1


def build_node(
    keys: RouterKeys,
    verifier: QuoteVerifier | None,
    allow: Iterable[Allow],
    state: StateFile,
    *,
    namespace: str,
    now: float,
) -> RouterNode:
    """Authority and router over the recorded state; the state is saved after each change."""
    recorded = state.load()
    router = Router()
    authority = Authority(
        "utility", keys.signing, verifier, admission_policy(allow), router, rng=os.urandom,
        keyring=keys.keyring(recorded.epochs, now=now), consent=recorded.consent,
    )  # fmt: skip

    def save() -> None:
        state.save(RouterState(authority.consent, authority.keys.epochs()))

    node = RouterNode(authority, router, keys.operator, os.urandom, namespace=namespace)
    node.on_change = save
    save()  # the epochs this run starts at are recorded before any is handed out
    return node


# -- the services -----------------------------------------------------------------------------


async def _connect(url: str) -> Any:
    from meterseal.services.nats_bus import connect_nats

    # One line (password hidden) if there is no server, not nats-py's traceback per try.
    return await connect_nats(url, max_reconnect_attempts=3, pending_size=64 * 1024 * 1024)


def _nats_ready(nc: Any) -> str | None:
    if nc is None or nc.is_connected:
        return None  # not connected yet is the lifecycle's to report
    return "the NATS connection is " + ("closed" if nc.is_closed else "lost, reconnecting")


class RouterService:
    """The router node on NATS, under the runtime's lifecycle."""

    name = "router"

    def __init__(self, node: RouterNode, nats_url: str) -> None:
        self.node = node
        self.nats_url = nats_url
        self.nc: Any = None
        self.readiness = Readiness(lambda: _nats_ready(self.nc), every=0.0)  # no I/O: no cache
        self.metrics = ServiceMetrics(self.name)
        self.metrics.bridge(
            "meterseal_dissemination",
            "Router events: publications received, delivered, unmatched, refused by reason",
            "kind",
            lambda: self.node.router.counters,
        )
        self.metrics.queue_depth.labels("members").set_function(
            lambda: len(self.node.router.members())
        )
        self._route_seconds = self.metrics.batch.labels("route")

    async def start(self) -> dict[str, str]:
        """Connect and answer the node's subjects."""
        from meterseal.dissemination.nats_transport import serve_node

        self.nc = await _connect(self.nats_url)
        await serve_node(self.nc, self.node, observe=self._route_seconds.observe)
        return {"router": f"{shown(self.nats_url)}/{self.node.namespace}"}

    async def run(self, stop: asyncio.Event) -> None:
        """Route until stopped."""
        await stop.wait()

    async def stop(self) -> None:
        """Finish the frames in hand and disconnect."""
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    def counters(self) -> dict[str, Any]:
        """The router's counters and its members."""
        return {
            "router": dict(self.node.router.counters),
            "members": len(self.node.router.members()),
        }


# -- the aggregator ---------------------------------------------------------------------------


def encode_policy(policy: AggregationPolicy) -> bytes:
    """The aggregation policy as the CAS holds it (canonical CBOR)."""
    dp = policy.privacy
    body = {
        "frame": policy.moderate.text(), "low_frame": policy.low.text(), "k": policy.k,
        "lateness": policy.lateness,
        "dp": None if dp is None else [dp.epsilon, dp.clamp_wh, dp.budget.total],
    }  # fmt: skip
    return bytes(cbor2.dumps(body, canonical=True))


def decode_policy(data: bytes) -> AggregationPolicy:
    """The aggregation policy the CAS released; ConfigurationError if it is not one."""
    try:
        body = cbor2.loads(data)
        dp = body["dp"]
        privacy = None
        if dp is not None:
            privacy = DifferentialPrivacy.laplace(float(dp[0]), int(dp[1]), float(dp[2]))
        return AggregationPolicy(
            Frame.parse(body["frame"]), Frame.parse(body["low_frame"]), int(body["k"]),
            int(body["lateness"]), privacy,
        )  # fmt: skip
    except (cbor2.CBORDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigurationError(f"{AGGREGATOR_POLICY} is not an aggregation policy") from exc


@dataclass(frozen=True)
class AggregatorSetup:
    """What an aggregator starts with: its policy, whom it trusts, how it attests."""

    policy: AggregationPolicy
    authority: ed25519.Ed25519PublicKey
    measurement: Measurement
    attester: Attester
    provenance: str


def aggregator_from_cas(
    cas_url: str,
    deployment: Path,
    *,
    attester: Attester | None = None,
    passphrase: bytes | None = None,
) -> AggregatorSetup:
    """Measure the aggregator, attest, fetch AGGREGATOR_SECRETS."""
    from meterseal.trust.attestation import SimulatedAttester

    chosen = attester or SimulatedAttester.from_deployment(deployment, passphrase)
    worker = start_trusted(
        AGGREGATOR_STAGE, cas_url, deployment, names=AGGREGATOR_SECRETS, attester=chosen
    )
    try:
        authority = ed25519.Ed25519PublicKey.from_public_bytes(worker.secrets[AUTHORITY_PUBLIC])
    except (KeyError, ValueError) as exc:
        raise ConfigurationError(f"{AUTHORITY_PUBLIC} is not a raw Ed25519 public key") from exc
    return AggregatorSetup(
        decode_policy(worker.secrets.get(AGGREGATOR_POLICY, b"")), authority,
        worker.measurement, chosen,
        f"CAS {cas_url}, measurement {worker.measurement.short}, {worker.assurance}",
    )  # fmt: skip


class AggregatorStage:
    """The attested aggregator on NATS, under the runtime's lifecycle."""

    name = "aggregator"

    def __init__(
        self,
        client: MemberClient,
        policy: AggregationPolicy,
        attester: Attester,
        measurement: Measurement,
        nats_url: str,
        namespace: str,
        *,
        clock: Callable[[], float] = time.time,
        report: Callable[[str], None] | None = None,
        report_every: float = 5.0,
    ) -> None:
        self.client, self.policy = client, policy
        self.report, self.report_every = report, report_every
        self.attester, self.measurement = attester, measurement
        self.nats_url, self.namespace = nats_url, namespace
        self.aggregator = Aggregator(
            client, Publisher(client.name, client.keys, rng=os.urandom), policy
        )
        self.service: Any = None
        self.nc: Any = None
        self.readiness = Readiness(lambda: _nats_ready(self.nc), every=0.0)
        self.metrics = ServiceMetrics(self.name)
        self.metrics.bridge(
            "meterseal_dissemination", "Aggregator events: readings taken, refused, late, withheld",
            "kind", self._events,
        )  # fmt: skip
        self.metrics.queue_depth.labels("releases").set_function(
            lambda: self.service.pending if self.service is not None else 0
        )

    def _events(self) -> dict[str, int]:
        released = self.service.released if self.service is not None else 0
        return {
            "readings": 0,
            "late": 0,  # there from the start: a dashboard's rate of it needs the zero
            **self.aggregator.counters,
            **self.aggregator.aggregation.counters,
            "released": released,
        }

    async def start(self) -> dict[str, str]:
        """Connect, be admitted (attested) with a subscription to all HIGH data."""
        from meterseal.dissemination.nats_transport import NatsMember
        from meterseal.dissemination.runners import AggregatorService

        self.nc = await _connect(self.nats_url)
        member = NatsMember(self.nc, self.client, namespace=self.namespace)
        self.service = AggregatorService(member, self.aggregator)
        await member.join(
            ((PrivacyLevel.HIGH, Subscription()),), on_delivery=self.service.deliver,
            attester=self.attester, measurement=self.measurement,
        )  # fmt: skip
        return {"aggregator": f"{shown(self.nats_url)}/{self.namespace}"}

    async def run(self, stop: asyncio.Event) -> None:
        """Aggregate until stopped; report the counts every `report_every` s they moved."""
        from meterseal.dissemination.runners import progress_line

        if self.report is None or self.report_every <= 0:
            await stop.wait()
            return
        shown = self._events()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.report_every)
            now = self._events()
            line = progress_line(shown, now, self.policy.lateness)
            if line is not None:
                self.report(line)
                shown = now

    async def stop(self) -> None:
        """Send the releases queued, disconnect."""
        if self.service is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.service.finish(flush=False), 10)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    def counters(self) -> dict[str, Any]:
        """Readings taken and refused, releases sent."""
        return {"aggregator": self._events()}
