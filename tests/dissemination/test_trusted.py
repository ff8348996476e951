"""The router and the aggregator as attested trusted workers with their keys from a real CAS.

Real processes: `meterseal cas serve`, `meterseal router serve --cas` and `meterseal router
aggregate --cas` on NATS, provisioned as an operator would (`cas init`, `router init`,
`router provision`). The members driven from here (head-end publisher, utility, an app)
claim their measurements through the simulated platform: no hardware guarantee.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from meterseal.bench.served import Served
from meterseal.crypto.at_rest import read_secret_file
from meterseal.dissemination.groupkeys import COUNTER_BITS, KeyStore, derive_level_key
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import MemberClient, Publisher
from meterseal.dissemination.nats_transport import NatsMember, operator_request
from meterseal.dissemination.node import operator_command
from meterseal.dissemination.service import ROUTER_STAGE, default_allow, router_config
from meterseal.dissemination.subscription import Subscription
from meterseal.dissemination.wire import pairs
from meterseal.errors import ConfigurationError
from meterseal.storage import Store
from meterseal.trust.attestation import SimulatedAttester
from meterseal.trust.cas import Cas, decode_entry
from meterseal.trust.cas_store import CasStore
from meterseal.trust.measurement import Measurement, stage_measurement
from meterseal.trust.vault import Vault
from tests.command_line import invoke
from tests.dissemination.test_nats import NATS_URL, nats_up  # noqa: F401 - fixture

pytestmark = pytest.mark.services
PUBLISHER, UTILITY, APP = (Measurement(bytes([b]) * 32) for b in (5, 9, 11))
ALICE, BOB = b"\xaa" * 16, b"\xbb" * 16
HOUR = 1_790_002_800
HIGH, MODERATE = PrivacyLevel.HIGH, PrivacyLevel.MODERATE


class Deployment:
    """A CAS provisioned for dissemination, and the commands that serve it."""

    def __init__(self, tmp: Path, namespace: str) -> None:
        self.directory, self.keys = tmp / "deployment", tmp / "router"
        self.store, self.state = f"sqlite:///{tmp / 'cas.db'}", tmp / "router.state"
        self.namespace = namespace
        self.allow = [f"--allow={r}={m.hex}" for r, m in (("publisher", PUBLISHER),
                      ("utility", UTILITY), ("app", APP))]  # fmt: skip
        for args in (["cas", "init", "-d", str(self.directory)], ["router", "init", str(self.keys)],
                     ["router", "provision", "--keys", str(self.keys), "-d", str(self.directory),
                      "--store", self.store, "--k", "2", *self.allow]):  # fmt: skip
            done = invoke(args)
            assert done.exit_code == 0, done.output
        self.authority = ed25519.Ed25519PublicKey.from_public_bytes(
            bytes.fromhex((self.keys / "authority.pub").read_text().strip())
        )
        self.operator = read_secret_file(self.keys / "operator.key", None)
        self.attester = SimulatedAttester.from_deployment(self.directory)

    def cas(self) -> Cas:
        """The CAS core on its store (the test reads roots and the log, as an auditor)."""
        return Cas(CasStore(Store.open(self.store)), Vault.from_deployment(self.directory), [])

    def root(self, level: PrivacyLevel) -> tuple[int, bytes]:
        """(version, value) of a level's group-key root in the CAS."""
        cas = self.cas()
        name = f"group-key/{level.name.lower()}"
        latest = cas.state.latest_secret(name)
        assert latest is not None
        return latest.version, cas.vault.open(name, latest.version, latest.sealed)

    def serve(self, cas_url: str, command: str, ready: str, *more: str) -> Served:
        """`router serve|aggregate --cas` in a process of its own."""
        common = ["--cas", cas_url, "-d", str(self.directory), "--nats", NATS_URL]
        served = Served(["router", command, *common, "--namespace", self.namespace, *more],
                        ready=ready)  # fmt: skip
        served.wait_ready(120)
        if not any(line.startswith(f"ready {ready}") for line in served.lines):
            served.process.wait(10)  # it ended: wait_ready can see its output before its exit
            raise ConfigurationError("\n".join(served.lines[-20:]))
        return served


async def _member(
    deployment: Deployment, nc: Any, name: str, role: Role, measurement: Measurement,
    *subscriptions: tuple[PrivacyLevel, Subscription],
) -> tuple[NatsMember, list[list[bytes]]]:  # fmt: skip
    inbox: list[list[bytes]] = []

    async def deliver(elements: list[bytes]) -> None:
        inbox.extend(pairs(elements))

    client = MemberClient(name, role, "utility", deployment.authority)
    member = NatsMember(nc, client, namespace=deployment.namespace)
    await member.join(
        subscriptions, on_delivery=deliver, attester=deployment.attester, measurement=measurement
    )
    return member, inbox


async def _eventually(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def _derived_from_cas(deployment: Deployment, publication: list[bytes]) -> int:
    """The epoch of a HIGH publication, checked to open with the CAS root's derived master."""
    version, root = deployment.root(HIGH)
    reader = KeyStore()
    fields = cbor2.loads(publication[0])
    epoch = fields[10]
    assert epoch >> COUNTER_BITS == version  # the epoch names the root's CAS version
    reader.install_master(int(HIGH), epoch, derive_level_key(root, HIGH, epoch))
    reader.open(fields, publication[0], publication[1])  # raises unless derived so
    return int(epoch)


def _op(deployment: Deployment, command: dict[str, Any]) -> bytes:
    return operator_command(deployment.operator, command, now=time.time(), nonce=os.urandom(16))


def _run(scenario: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        try:
            await scenario(nc)
        finally:
            await nc.close()

    asyncio.run(main())


@pytest.mark.usefixtures("nats_up")
def test_router_and_aggregator_run_on_keys_released_by_the_cas(
    tmp_path: Path, unique_name: str
) -> None:
    deployment = Deployment(tmp_path, unique_name)
    cas = Served(["cas", "serve", "-d", str(deployment.directory), "--store", deployment.store,
                  "--listen", "127.0.0.1:0"], ready="cas")  # fmt: skip
    cas.wait_ready(60)
    url = cas.endpoint("cas")
    router_args = (*deployment.allow, "--state", str(deployment.state))
    router = deployment.serve(url, "serve", "router", *router_args)
    aggregator = deployment.serve(url, "aggregate", "aggregator", "--k", "7")
    epochs: list[int] = []
    try:  # every assertion inside: a failing one still stops the processes (finally)
        warned = [line for line in aggregator.lines if line.startswith("warning: --k ignored")]
        assert warned, aggregator.lines  # the CAS's policy applies, and the operator is told so
        assert "(k=2," in warned[0]  # provisioned with --k 2: the CAS's value, not 7

        async def before_restart(nc: Any) -> None:
            headend, _ = await _member(deployment, nc, "headend", Role.PUBLISHER, PUBLISHER)
            utility, moderate = await _member(
                deployment, nc, "utility1", Role.UTILITY, UTILITY, (MODERATE, Subscription())
            )
            seal = Publisher("headend", headend.client.keys, rng=os.urandom).seal
            readings = [
                seal(HIGH, "reading", {"wh": 10 + q}, at=1, region="R01", customer=c,
                     start=HOUR + q * 900, interval=900)
                for q in range(4) for c in (ALICE, BOB)
            ]  # fmt: skip
            closing = seal(HIGH, "reading", {"wh": 1}, at=1, region="R01", customer=ALICE,
                           start=HOUR + 3 * 3600, interval=900)  # fmt: skip
            epochs.append(_derived_from_cas(deployment, closing))
            await headend.send([e for item in [*readings, closing] for e in item])
            await headend.drain()
            # k = 2 and the hourly frame came from the CAS's policy, not a command line.
            await _eventually(lambda: len(moderate) == 2)
            loads = sorted(
                (d.header.customer, d.values["wh"]) for d in map(utility.client.open, moderate)
            )
            assert loads == [(ALICE, 46), (BOB, 46)]
            grant = _op(deployment, {"op": "grant", "customer": ALICE, "app": "app1"})
            assert (await operator_request(nc, grant, namespace=deployment.namespace))["ok"]
            # Removing a HIGH publisher rotates HIGH: the head-end's next key is epoch + 1,
            # derived from the same CAS root.
            await _member(deployment, nc, "headend2", Role.PUBLISHER, PUBLISHER)
            remove = _op(deployment, {"op": "remove", "member": "headend2"})
            assert (await operator_request(nc, remove, namespace=deployment.namespace))["ok"]
            await _eventually(lambda: headend.counters["handouts"] >= 1)
            after = seal(HIGH, "reading", {"wh": 2}, at=1, region="R01", customer=BOB)
            epochs.append(_derived_from_cas(deployment, after))

        _run(before_restart)
        assert epochs[1] == epochs[0] + 1
        # Both run under the service skeleton: readiness and Prometheus metrics.
        routed = router.scrape(router.endpoint("admin"))
        assert routed["meterseal_dissemination_total{kind=received}"] >= 11
        assert routed["meterseal_batch_seconds_count{stage=route}"] >= 2
        aggregated = aggregator.scrape(aggregator.endpoint("admin"))
        assert aggregated["meterseal_dissemination_total{kind=released}"] >= 3
        assert router.stop() == 0
        router = deployment.serve(url, "serve", "router", *router_args)

        async def after_restart(nc: Any) -> None:
            # Members join again; the customer's consent survived in the sealed state.
            headend, _ = await _member(deployment, nc, "headend", Role.PUBLISHER, PUBLISHER)
            _, app_inbox = await _member(
                deployment, nc, "app1", Role.APP, APP, (HIGH, Subscription())
            )
            seal = Publisher("headend", headend.client.keys, rng=os.urandom).seal
            items = [seal(HIGH, "reading", {"wh": 5}, at=1, region="R01", customer=c)
                     for c in (ALICE, BOB)]  # fmt: skip
            epochs.append(_derived_from_cas(deployment, items[0]))
            await headend.send([e for item in items for e in item])
            await headend.drain()
            await _eventually(lambda: len(app_inbox) == 1)
            await asyncio.sleep(0.3)
            assert [i[0] for i in app_inbox] == [items[0][0]]  # Alice's only

        _run(after_restart)
        assert epochs[2] > epochs[1]  # a restart never issues an epoch twice
    finally:
        aggregator.stop()
        router.stop()
        cas.stop()
    log = [decode_entry(row.entry) for row in deployment.cas().state.log_rows()]
    released = [(e["stage"], sorted(n for n, _ in e["secrets"])) for e in log
                if e["outcome"] == "released"]  # fmt: skip
    assert released.count(("dissemination-aggregator", ["dissemination/aggregator-policy",
                           "dissemination/authority-public"])) == 1  # fmt: skip
    router_secrets = [s for stage, s in released if stage == "dissemination-router"]
    assert len(router_secrets) == 2  # once per start
    assert "group-key/high" in router_secrets[0]
    assert "dissemination/state-key" in router_secrets[0]


@pytest.mark.usefixtures("nats_up")
def test_a_revoked_router_gets_no_group_keys_and_does_not_start(
    tmp_path: Path, unique_name: str
) -> None:
    deployment = Deployment(tmp_path, unique_name)
    rules = [
        *default_allow(),
        (Role.PUBLISHER, PUBLISHER),
        (Role.UTILITY, UTILITY),
        (Role.APP, APP),
    ]
    allowed = stage_measurement(ROUTER_STAGE, router_config(rules))
    deployment.cas().revoke(allowed, "test: compromised build")
    cas = Served(["cas", "serve", "-d", str(deployment.directory), "--store", deployment.store,
                  "--listen", "127.0.0.1:0"], ready="cas")  # fmt: skip
    cas.wait_ready(60)
    try:
        with pytest.raises(ConfigurationError) as revoked:
            deployment.serve(cas.endpoint("cas"), "serve", "router", *deployment.allow)
        # Another admission rule is another measurement: the CAS never allowed it.
        with pytest.raises(ConfigurationError) as refused:
            deployment.serve(cas.endpoint("cas"), "serve", "router", "--allow",
                             f"aggregator={'0' * 64}")  # fmt: skip
    finally:
        cas.stop()
    assert "revoked" in str(revoked.value)
    assert "not allowed" in str(refused.value)
