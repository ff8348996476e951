"""`meterseal router …` end to end: init, serve on NATS, subscribe, consent, status."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.member import MemberClient, Publisher
from meterseal.dissemination.nats_transport import NatsMember
from meterseal.dissemination.service import member_measurement
from meterseal.trust.attestation import SimulatedAttester, init_simulated_platform
from meterseal.trust.measurement import Measurement
from tests.command_line import invoke
from tests.dissemination.test_consent_cli import KEY, _deployment
from tests.dissemination.test_nats import NATS_URL, nats_up  # noqa: F401 - fixture

pytestmark = pytest.mark.services
AGGREGATOR = Measurement(b"\x07" * 32)


def _start(args: list[str], wait_for: str | None) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "meterseal", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    if wait_for is not None:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        for line in process.stdout:
            if wait_for in line:
                break
            assert time.monotonic() < deadline, line
    return process


def _publish_low(keys: Path, platform: Path, namespace: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    public = ed25519.Ed25519PublicKey.from_public_bytes(
        bytes.fromhex((keys / "authority.pub").read_text().strip())
    )

    async def main() -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        client = MemberClient("agg", Role.AGGREGATOR, "utility", public)
        member = NatsMember(nc, client, namespace=namespace)
        attester = SimulatedAttester.from_deployment(platform)
        await member.join(attester=attester, measurement=AGGREGATOR)
        publisher = Publisher("agg", client.keys, rng=os.urandom)
        item = publisher.seal(
            PrivacyLevel.LOW, "regional_load", {"wh": 1234}, at=0, region="R01", start=3600
        )
        await member.send(item)  # one publication: a flat batch of one
        await member.drain()
        await nc.close()

    asyncio.run(main())


@pytest.mark.usefixtures("nats_up")
def test_router_serve_subscribe_consent_and_status(tmp_path: Path, unique_name: str) -> None:
    keys, platform, namespace = tmp_path / "router", tmp_path / "platform", unique_name
    platform.mkdir()
    init_simulated_platform(platform)
    assert invoke(["router", "init", str(keys)]).exit_code == 0
    assert invoke(["router", "init", str(keys)]).exit_code == 2  # never overwritten
    common = ["--nats", NATS_URL, "--namespace", namespace]
    serve = _start(
        ["router", "serve", "--keys", str(keys), "--platform", str(platform),
         "--allow", f"aggregator={AGGREGATOR.hex}", *common],
        "listening router",
    )  # fmt: skip
    try:
        subscriber = _start(
            ["router", "subscribe", "viewer", "--authority", str(keys / "authority.pub"),
             "--level", "low", "--where", 'region = "R01"', "--count", "1", *common],
            "admitted as viewer",
        )  # fmt: skip
        _publish_low(keys, platform, namespace)
        output, _ = subscriber.communicate(timeout=30)
        assert subscriber.returncode == 0, output
        assert "LOW" in output
        assert "1234" in output
        directory, store = _deployment(tmp_path)
        whose = ["--customer", "CUST-A", "-d", str(directory), "--store", store]
        granted = invoke(
            ["router", "consent", "grant", *whose, "--app", "someapp", "--keys", str(keys),
             *common],
        )  # fmt: skip
        assert granted.exit_code == 0, granted.output
        mtr1 = Anonymizer(KEY).pseudonym("MTR-1").hex()
        assert f"someapp now receives the raw (HIGH) readings of customer CUST-A (meter MTR-1, " \
            f"pseudonym {mtr1})" in granted.output  # fmt: skip
        assert "(meter MTR-2" in granted.output  # every meter of the customer's
        listed = invoke(
            ["router", "consent", "list", "-d", str(directory), "--store", store, "--keys",
             str(keys), *common],
        )  # fmt: skip
        assert listed.exit_code == 0, listed.output
        assert "someapp receives the raw (HIGH) readings of 2 pseudonym(s) (once admitted" in (
            listed.output
        )
        assert f"customer CUST-A (meter MTR-1, pseudonym {mtr1})" in listed.output
        assert "viewer (public_app, admitted) receives LOW" in listed.output
        status = invoke(["router", "status", "--keys", str(keys), *common])
        assert status.exit_code == 0, status.output
        assert "viewer" in status.output
        assert "aggregator" in status.output
        unattested = invoke(
            ["router", "subscribe", "sneaky", "--authority", str(keys / "authority.pub"),
             "--role", "utility", "--level", "moderate", *common],
        )  # fmt: skip
        assert unattested.exit_code == 2
        assert "attestation_failed" in unattested.output
    finally:
        serve.terminate()
        serve.wait(10)


def _stored(url: str, readings: list[tuple[bytes, int, int]]) -> None:
    """Anonymized measurements as the head-end's store keeps them."""
    from meterseal.storage import Store
    from meterseal.storage.schema import measurements

    rows = [
        {"region_id": "R01", "pseudonym": customer, "timestamp": start, "interval": 900,
         "energy_wh": wh, "phasor": None}
        for customer, start, wh in readings
    ]  # fmt: skip
    with Store.open(url) as db, db.transaction() as connection:
        connection.execute(measurements.insert(), rows)


@pytest.mark.usefixtures("nats_up")
def test_stored_readings_through_the_aggregator_to_the_utility(
    tmp_path: Path, unique_name: str
) -> None:
    # The documented journey: no measurement to invent, the router admits this checkout's
    # publisher and aggregator by itself and the utility by its role.
    keys, platform, namespace = tmp_path / "router", tmp_path / "platform", unique_name
    platform.mkdir()
    init_simulated_platform(platform)
    init = invoke(["router", "init", str(keys)])
    assert init.exit_code == 0
    assert f"publisher  {member_measurement(Role.PUBLISHER).hex}" in init.output
    store = f"sqlite:///{tmp_path / 'store.db'}"
    alice, bob = b"\xaa" * 16, b"\xbb" * 16
    hour = 1_790_002_800
    # Two customers over one hour, then a reading two hours later that closes that hour.
    rows = [(c, hour + q * 900, 10 + q) for q in range(4) for c in (alice, bob)]
    _stored(store, [*rows, (alice, hour + 3 * 3600, 1)])
    common = ["--nats", NATS_URL, "--namespace", namespace]
    member = ["--authority", str(keys / "authority.pub"), "--platform", str(platform)]
    serve = _start(
        ["router", "serve", "--keys", str(keys), "--platform", str(platform),
         "--allow", "utility", *common],
        "listening router",
    )  # fmt: skip
    try:
        aggregate = _start(
            ["router", "aggregate", *member, "--k", "2", *common], "ready aggregator"
        )  # fmt: skip
        utility = _start(
            ["router", "subscribe", "utility", *member, "--role", "utility", "--level",
             "moderate", "--count", "2", *common],
            "admitted as utility",
        )  # fmt: skip
        published = invoke(["router", "publish", *member, "--store", store, *common])
        assert published.exit_code == 0, published.output
        assert "published 9 readings" in published.output
        output, _ = utility.communicate(timeout=30)
        assert utility.returncode == 0, output
        lines = [line for line in output.splitlines() if "customer_load" in line]
        assert len(lines) == 2
        assert any("aaaaaaaaaaaa" in line and "'wh': 46" in line for line in lines)
        assert any("bbbbbbbbbbbb" in line and "'wh': 46" in line for line in lines)
        aggregate.terminate()
        assert "released" in aggregate.communicate(timeout=15)[0]
    finally:
        serve.terminate()
        serve.wait(10)
