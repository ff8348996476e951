"""The world `bench dissemination` runs in: a publisher, a router with its subscriptions
(10,000 by default), an attested aggregator and the head-end's publisher, and the processes
that host them.

Setup happens in the parent (admissions with simulated attestation: no hardware guarantee);
then the router service and the aggregator are forked onto NATS with the keys they were
handed, and the parent produces. The subscriptions besides the aggregator's and the
utility's are registered at the router directly (per-customer apps without consent, which
the router matches and then drops, and public regional views), so that every publication
goes through the equality index, the residual predicates and the consent filter.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import cbor2
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ed25519

from meterseal.dissemination.aggregator import AggregationPolicy, Aggregator
from meterseal.dissemination.authority import Authority, secret_name
from meterseal.dissemination.inproc import LocalNetwork
from meterseal.dissemination.levels import GRANTS, PrivacyLevel, Role
from meterseal.dissemination.member import MemberClient, Publisher
from meterseal.dissemination.node import RouterNode
from meterseal.dissemination.router import Router
from meterseal.dissemination.subscription import Subscription, parse
from meterseal.runtime.nats_endpoint import connect as connect_nats
from meterseal.trust.attestation import SimulatedAttester, SimulatedVerifier
from meterseal.trust.measurement import Measurement, measure
from meterseal.trust.policy import AllowMeasurement, AnyOf

SUBSCRIPTIONS = 10_000
REGIONS = 50
BASE_TIME = 1_790_000_000 - 1_790_000_000 % 86_400
SAMPLES = 4_000  # latency samples kept for plots


def role_measurement(role: Role) -> Measurement:
    """The measured code identity of a role's worker (the dissemination package + its role)."""
    return measure(["meterseal.dissemination"], {"role": role.value})


@dataclass
class BenchWorld:
    """Everything set up before the processes fork."""

    network: LocalNetwork
    node: RouterNode
    headend: Publisher
    aggregator: Aggregator
    meters: int
    customers: list[bytes] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)

    def reading(self, index: int, at: int) -> list[bytes]:
        """The `index`-th raw reading: meter index % meters, every 15 minutes."""
        meter = index % self.meters
        return self.headend.seal(
            PrivacyLevel.HIGH, "reading", {"wh": 100 + index % 37}, at=at,
            region=self.regions[meter], customer=self.customers[meter],
            start=BASE_TIME + (index // self.meters) * 900, interval=900,
        )  # fmt: skip


def build_world(meters: int, subscriptions: int = SUBSCRIPTIONS, *, k: int = 5) -> BenchWorld:
    """A publisher, router, attested aggregator and head-end; `subscriptions` in total."""
    platform = ed25519.Ed25519PrivateKey.generate()
    rules = []
    for role in (Role.AGGREGATOR, Role.PUBLISHER, Role.UTILITY):
        secrets = frozenset(secret_name(role, lv) for (r, lv) in GRANTS if r is role)
        rules.append(AllowMeasurement(role_measurement(role), secrets, role.value))
    router = Router()
    authority = Authority(
        "utility", ed25519.Ed25519PrivateKey.generate(), SimulatedVerifier(platform.public_key()),
        AnyOf(tuple(rules)), router, rng=os.urandom,
    )  # fmt: skip
    network = LocalNetwork(authority, router)
    attester = SimulatedAttester(platform)

    def join(name: str, role: Role, *subs: tuple[PrivacyLevel, Subscription]) -> MemberClient:
        client = MemberClient(name, role, "utility", authority.public_key)
        network.join(client, subs, now=time.time(), attester=attester,
                     measurement=role_measurement(role))  # fmt: skip
        return client

    headend = join("headend", Role.PUBLISHER)
    agg = join("agg", Role.AGGREGATOR, (PrivacyLevel.HIGH, Subscription()))
    join("utility1", Role.UTILITY, (PrivacyLevel.MODERATE, Subscription()))
    customers = [i.to_bytes(4, "big") * 4 for i in range(meters)]
    _filler(router, subscriptions - 2, customers)
    aggregator = Aggregator(agg, Publisher("agg", agg.keys, rng=os.urandom), AggregationPolicy(k=k))
    node = RouterNode(authority, router, os.urandom(32), os.urandom,
                      namespace=f"bench.dissem.{os.getpid()}")  # fmt: skip
    return BenchWorld(
        network, node, Publisher("headend", headend.keys, rng=os.urandom, checked=False),
        aggregator, meters,
        customers, [f"R{m % REGIONS:02d}" for m in range(meters)],
    )  # fmt: skip


def _filler(router: Router, count: int, customers: list[bytes]) -> None:
    """Per-customer app subscriptions (90%) and public regional views (10%)."""
    for i in range(count):
        name = f"filler{i}"
        if i % 10:
            router.add_member(name, Role.APP)
            customer = customers[i % len(customers)].hex()
            router.subscribe(name, PrivacyLevel.HIGH, parse(f"customer = h'{customer}'"))
        else:
            router.add_member(name, Role.PUBLIC_APP)
            router.subscribe(name, PrivacyLevel.LOW, parse(f'region = "R{i % REGIONS:02d}"'))


@dataclass
class Sink:
    """The aggregator's side of a run: when each publication was aggregated, and its latency."""

    received: int = 0
    first: float = 0.0
    last: float = 0.0
    latencies: list[np.ndarray] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)

    def note(self, published_at: list[int]) -> None:
        """One frame aggregated now; latency = now - each header's publication time."""
        now = time.time()
        if not self.received:
            self.first = now
        self.last = now
        self.received += len(published_at)
        self.latencies.append(int(now * 1e6) - np.asarray(published_at, dtype=np.int64))
        self.times.append(np.full(len(published_at), now, dtype=np.float64))

    def report(self) -> dict[str, Any]:
        """Counts, latency (µs) percentiles and a sample for plots; resets the window."""
        lat = np.concatenate(self.latencies) if self.latencies else np.zeros(0, np.int64)
        times = np.concatenate(self.times) if self.times else np.zeros(0)
        step = max(1, len(lat) // SAMPLES)
        report = {
            "received": self.received, "first": self.first, "last": self.last,
            "cpu": time.process_time(), "latency": _percentiles(lat),
            "sample": [times[::step].tolist(), (lat[::step] / 1000).tolist()],
        }  # fmt: skip
        self.received, self.latencies, self.times = 0, [], []
        return report


def _percentiles(lat_us: np.ndarray) -> dict[str, float]:
    if not len(lat_us):
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    ms = lat_us / 1000.0
    p50, p99 = np.percentile(ms, [50, 99])
    return {"mean": float(ms.mean()), "p50": float(p50), "p99": float(p99), "max": float(ms.max())}


# -- the forked processes ----------------------------------------------------------------


def _stop_on_sigterm(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


def router_process(world: BenchWorld, url: str) -> None:
    """Run the router node on NATS until SIGTERM."""
    from meterseal.dissemination.nats_transport import serve_node

    async def main() -> None:

        stop = asyncio.Event()
        _stop_on_sigterm(asyncio.get_running_loop(), stop)
        nc = await connect_nats(url, pending_size=64 * 1024 * 1024)
        await serve_node(nc, world.node)
        print("router ready", flush=True)
        await stop.wait()
        await nc.close()

    asyncio.run(main())


def aggregator_process(world: BenchWorld, url: str) -> None:
    """Run the aggregator on NATS: consume deliveries, publish releases, answer reports."""
    from meterseal.dissemination.nats_transport import NatsMember
    from meterseal.dissemination.runners import AggregatorService

    async def main() -> None:

        stop = asyncio.Event()
        _stop_on_sigterm(asyncio.get_running_loop(), stop)
        nc = await connect_nats(url, pending_size=64 * 1024 * 1024)
        member = NatsMember(nc, world.aggregator.member, namespace=world.node.namespace)
        service = AggregatorService(member, world.aggregator)
        sink = Sink()

        async def deliver(items: list[Any]) -> None:
            published_at: list[int] = []
            await service.deliver(items, published_at)
            sink.note(published_at)

        async def report(msg: Any) -> None:
            if msg.data == b"peek":
                await msg.respond(cbor2.dumps({"received": sink.received}))
            else:
                await msg.respond(cbor2.dumps(sink.report() | {"releases": service.released}))

        await member.attach(deliver)
        await nc.subscribe(f"{world.node.namespace}.bench.report", cb=report)
        await nc.flush()
        await stop.wait()
        await nc.close()

    asyncio.run(main())
