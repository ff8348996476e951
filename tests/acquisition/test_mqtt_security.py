"""MQTT attacks against a broker started with the shipped configuration: all refused.

Each test starts its own Mosquitto (tests/mosquitto.py) with TLS from the test CA, no
anonymous access, per-meter passwords and ACLs, and a head-end identified by a client
certificate (``headend-a``) or a password (``headend-b``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from meterseal.acquisition import mosquitto
from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.mqtt import MqttLimits, MqttLink, MqttReceiver
from meterseal.acquisition.mqtt_endpoint import MqttEndpoint, certificate_user
from meterseal.acquisition.stages import TrustedStages
from meterseal.crypto import at_rest, certs, packet
from meterseal.crypto.keys import MeterKey
from meterseal.errors import ConfigurationError, KeyFileError
from meterseal.model import Reading
from tests.conftest import NOW, World
from tests.mosquitto import Broker, running_broker

T = NOW.timestamp()
HEADEND_B_PASSWORD = "b-" + "x" * 30


@dataclass
class Secure:
    """A running broker and what the head-end and meters need to reach it."""

    broker: Broker
    prefix: str
    headend_url: str  # headend-a, by client certificate
    headend_user: str  # its user name and client id: headend-a-<random>
    world: World

    def link(self, *, passwords: bool = True) -> MqttLink:
        """Meters connecting as themselves over TLS (or, without passwords, anonymously)."""
        secret = self.broker.secret
        return MqttLink(
            self.broker.url(),
            prefix=self.prefix,
            passwords=mosquitto.meter_passwords(secret) if passwords else None,
        )

    def receiver(self, ingest: Ingest, url: str | None = None) -> MqttReceiver:
        """A head-end receiver sharing the readings with any other in group ``g``."""
        limits = MqttLimits(session_expiry=60, reconnect_delay=0.1)
        return MqttReceiver(ingest, url or self.headend_url, limits=limits, prefix=self.prefix)

    def ingest(self, sink: MemorySink) -> Ingest:
        """The trusted stages of the test world into `sink`."""
        stages = TrustedStages(self.world.headend, self.world.registry, Anonymizer(b"q" * 32))
        return Ingest(stages, sink, clock=lambda: T)


@pytest.fixture
def secure(world: World, unique_name: str, tmp_path: Path) -> Iterator[Secure]:
    """A broker of this test's own, the world's meters registered with it."""
    prefix = f"ms/{unique_name}"
    cert, key = mosquitto.write_client_certificate(
        tmp_path / "headend",
        "headend-a",
        world.ca_key,
        world.ca_cert,
        passphrase=None,
        now=NOW,
        rng=os.urandom,
    )
    user = certificate_user(cert)
    with running_broker(
        world.ca_key,
        world.ca_cert,
        sorted(m.meter_id for m in world.meters.values()),
        prefix=prefix,
        headends=[user],
        headend_passwords={"headend-b": HEADEND_B_PASSWORD},
        now=NOW,
    ) as broker:
        url = broker.url(certificate=True, query=f"cert={cert}&key={key}")
        yield Secure(broker, prefix, url, user, world)


def _packets(key: MeterKey, world: World, counters: range) -> list[bytes]:
    public = world.headend.public()
    return [
        packet.seal(
            Reading(key.meter_id, c, int(T) - 900, 900, 7),
            key,
            public,
            key.suite,
            now=NOW,
            rng=os.urandom,
        )
        for c in counters
    ]


def _client(endpoint: MqttEndpoint, identifier: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        **endpoint.client_options(),
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    )


async def _refused(endpoint: MqttEndpoint, identifier: str | None = None) -> bool:
    """Whether the broker (or the TLS handshake) refuses a connection to `endpoint`."""
    try:
        async with _client(endpoint, identifier):
            return False
    except (aiomqtt.MqttError, ssl.SSLError, OSError):
        return True


def test_good_meters_readings_are_all_stored_by_two_headends_sharing_them(
    secure: Secure,
) -> None:
    a, b = secure.world.meters["p256"], secure.world.meters["ed25519"]
    password_url = secure.broker.url().replace(
        "mqtts://", f"mqtts://headend-b:{HEADEND_B_PASSWORD}@"
    )

    async def scenario() -> tuple[MemorySink, list[MqttReceiver]]:
        sink = MemorySink()
        ingest = secure.ingest(sink)
        await ingest.start()
        receivers = [secure.receiver(ingest), secure.receiver(ingest, password_url)]
        for receiver in receivers:
            await receiver.start()
        link = secure.link()
        acks = await asyncio.gather(
            link.exchange(a.meter_id, _packets(a, secure.world, range(1, 21)), 10),
            link.exchange(b.meter_id, _packets(b, secure.world, range(1, 21)), 10),
        )
        await link.close()
        for receiver in receivers:
            await receiver.stop()
        await ingest.stop()
        assert list(acks) == [[Ack.ACCEPTED] * 20] * 2
        return sink, receivers

    sink, receivers = asyncio.run(scenario())
    assert set(sink.originals) == {(m.meter_id, c) for m in (a, b) for c in range(1, 21)}
    assert [r.client_id for r in receivers] == [secure.headend_user, "headend-b"]
    assert secure.headend_user.startswith("headend-a-")
    assert sum(r.counts["received"] for r in receivers) == 40
    assert all(r.counts["disconnected"] == 0 for r in receivers)


def test_nobody_without_the_headends_identity_can_take_its_session_over(secure: Secure) -> None:
    meter = secure.world.meters["p256"]
    tls = MqttEndpoint.parse(secure.broker.url())
    cert_listener = MqttEndpoint.parse(secure.broker.url(certificate=True))

    async def scenario() -> tuple[MemorySink, MqttReceiver, list[bool]]:
        sink = MemorySink()
        ingest = secure.ingest(sink)
        await ingest.start()
        receiver = secure.receiver(ingest)
        await receiver.start()
        refused = [
            # Its client id, no credentials (the old attack).
            await _refused(tls, receiver.client_id),
            # Its user name with a wrong password, and the password head-end's likewise.
            await _refused(tls.with_user(receiver.client_id, "guess"), receiver.client_id),
            await _refused(tls.with_user("headend-b", "guess"), "headend-b"),
            # The certificate listener without a certificate.
            await _refused(cert_listener, receiver.client_id),
        ]
        # A meter's own good credentials asking for the head-end's client id: the broker
        # makes its id its user name, so the head-end's session is not touched.
        async with _client(secure.broker.meter_endpoint(meter.meter_id), receiver.client_id):
            pass
        link = secure.link()
        acks = await link.exchange(meter.meter_id, _packets(meter, secure.world, range(1, 6)), 10)
        await link.close()
        await receiver.stop()
        await ingest.stop()
        assert acks == [Ack.ACCEPTED] * 5
        return sink, receiver, refused

    sink, receiver, refused = asyncio.run(scenario())
    assert refused == [True] * 4
    assert receiver.counts["disconnected"] == 0
    assert receiver.counts["received"] == 5
    assert set(sink.originals) == {(meter.meter_id, c) for c in range(1, 6)}


def test_a_certificate_from_another_ca_is_refused(secure: Secure, tmp_path: Path) -> None:
    other_key, other_ca = certs.create_ca("other CA", now=NOW, rng=os.urandom)
    cert, key = mosquitto.write_client_certificate(
        tmp_path / "other",
        "headend-a",
        other_key,
        other_ca,
        passphrase=None,
        now=NOW,
        rng=os.urandom,
    )
    forged = MqttEndpoint.parse(secure.broker.url(certificate=True, query=f"cert={cert}&key={key}"))
    assert asyncio.run(_refused(forged, "headend-a"))


def test_a_meter_can_neither_publish_as_another_nor_read_its_acks(secure: Secure) -> None:
    a, b = secure.world.meters["p256"], secure.world.meters["ed25519"]
    prefix = secure.prefix

    async def scenario() -> tuple[MemorySink, MqttReceiver, list[int], list[str]]:
        sink = MemorySink()
        ingest = secure.ingest(sink)
        await ingest.start()
        receiver = secure.receiver(ingest)
        await receiver.start()
        heard: list[str] = []
        async with _client(secure.broker.meter_endpoint(a.meter_id)) as spy:
            codes = await spy.subscribe(
                [
                    (f"{prefix}/acks/#", 1),
                    (f"{prefix}/acks/{b.meter_id}", 1),
                    (f"{prefix}/acks/{a.meter_id}", 1),
                ]
            )
            # A's genuine packet on B's topic: the ack would go to B.
            await spy.publish(
                f"{prefix}/readings/{b.meter_id}", _packets(a, secure.world, range(1, 2))[0], qos=1
            )
            link = secure.link()
            acks_b = await link.exchange(b.meter_id, _packets(b, secure.world, range(1, 4)), 10)
            await link.close()
            # Then A's own packet on its own topic: its ack is the last thing A hears.
            await spy.publish(
                f"{prefix}/readings/{a.meter_id}", _packets(a, secure.world, range(2, 3))[0], qos=1
            )
            async with asyncio.timeout(10):
                async for message in spy.messages:
                    heard.append(message.topic.value)
                    if message.topic.value.endswith(f"/acks/{a.meter_id}"):
                        break
        await receiver.stop()
        await ingest.stop()
        assert acks_b == [Ack.ACCEPTED] * 3
        return sink, receiver, [c if isinstance(c, int) else c.value for c in codes], heard

    sink, receiver, codes, heard = asyncio.run(scenario())
    # Mosquitto grants all three subscriptions and checks each message against the ACL:
    # A hears its own ack, never B's.
    assert codes == [1, 1, 1]
    assert heard == [f"{prefix}/acks/{a.meter_id}"]
    assert receiver.counts["received"] == 4  # B's three and A's own: the spoof never arrived
    assert set(sink.originals) == {(b.meter_id, c) for c in range(1, 4)} | {(a.meter_id, 2)}


def test_anonymous_and_plain_tcp_clients_are_refused(secure: Secure) -> None:
    tls = MqttEndpoint.parse(secure.broker.url())
    plain = MqttEndpoint("127.0.0.1", secure.broker.plan.password_port)
    meter = secure.world.meters["p256"]
    own = secure.broker.meter_endpoint(meter.meter_id)
    system_cas = MqttEndpoint("127.0.0.1", own.port, True, own.username, own.password)

    async def scenario() -> list[bool]:
        return [
            await _refused(tls),  # anonymous, so it cannot subscribe to acks either
            await _refused(plain),  # no TLS on the TLS listener
            await _refused(plain.with_user(meter.meter_id, own.password or "")),
            await _refused(system_cas),  # a broker the system's CAs do not vouch for
            await _refused(own),  # the control: the meter itself gets in
        ]

    assert asyncio.run(scenario()) == [True, True, True, True, False]


def test_a_meter_removed_from_the_registry_is_refused_after_a_reload(secure: Secure) -> None:
    a, b = secure.world.meters["p256"], secure.world.meters["ed25519"]
    mosquitto.write_access(
        secure.broker.plan.directory,
        [a.meter_id],
        secure.broker.secret,
        headends=[secure.headend_user],
        prefix=secure.prefix,
    )
    secure.broker.reload()

    async def scenario() -> list[bool]:
        return [
            await _refused(secure.broker.meter_endpoint(b.meter_id)),
            await _refused(secure.broker.meter_endpoint(a.meter_id)),
        ]

    assert asyncio.run(scenario()) == [True, False]


def test_readings_sent_while_the_headend_is_away_are_stored_when_it_is_back(
    secure: Secure,
) -> None:
    meter = secure.world.meters["p256"]

    async def scenario() -> tuple[MemorySink, MqttReceiver]:
        sink = MemorySink()
        ingest = secure.ingest(sink)
        await ingest.start()
        first = secure.receiver(ingest)
        await first.start()  # creates headend-a's persistent session...
        await first.stop()  # ...which the broker keeps, queueing for it
        async with _client(secure.broker.meter_endpoint(meter.meter_id)) as client:
            for data in _packets(meter, secure.world, range(1, 11)):
                await client.publish(f"{secure.prefix}/readings/{meter.meter_id}", data, qos=1)
        # Someone after the queued readings, without the head-end's key. (A refused CONNECT
        # naming its exact client id would still drop the session: eclipse-mosquitto#3551.)
        tls, cert_listener = (
            MqttEndpoint.parse(secure.broker.url(certificate=b)) for b in (False, True)
        )
        for guess in ["headend-a", "headend", "meterseal-headend"]:
            assert await _refused(tls, guess)
            assert await _refused(tls.with_user(guess, "guess"), guess)
        assert await _refused(cert_listener, first.client_id)
        again = secure.receiver(ingest)  # the same identity: the same session
        await again.start()
        async with asyncio.timeout(10):
            while len(sink.originals) < 10:
                await asyncio.sleep(0.02)
        await again.stop()
        await ingest.stop()
        return sink, again

    sink, again = asyncio.run(scenario())
    assert set(sink.originals) == {(meter.meter_id, c) for c in range(1, 11)}
    assert again.counts["received"] == 10


def test_an_encrypted_headend_key_opens_with_the_passphrase_only(
    secure: Secure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = mosquitto.write_client_certificate(
        tmp_path / "enc",
        "headend-a",
        secure.world.ca_key,
        secure.world.ca_cert,
        passphrase=b"pass phrase",
        now=NOW,
        rng=os.urandom,
    )
    assert at_rest.is_encrypted(key.read_bytes())
    endpoint = MqttEndpoint.parse(
        secure.broker.url(certificate=True, query=f"cert={cert}&key={key}")
    )
    monkeypatch.delenv("MS_PASSPHRASE", raising=False)
    with pytest.raises(KeyFileError, match="MS_PASSPHRASE"):
        endpoint.tls_context()
    monkeypatch.setenv("MS_PASSPHRASE", "pass phrase")
    assert not asyncio.run(_refused(endpoint, "headend-a"))


def test_meters_beyond_the_links_connection_cap_reconnect_in_turn(secure: Secure) -> None:
    meters = [secure.world.meters[s] for s in ("p256", "ed25519", "pq")]

    async def scenario() -> tuple[list[list[Ack]], int]:
        sink = MemorySink()
        ingest = secure.ingest(sink)
        await ingest.start()
        receiver = secure.receiver(ingest)
        await receiver.start()
        link = MqttLink(
            secure.broker.url(),
            prefix=secure.prefix,
            passwords=mosquitto.meter_passwords(secure.broker.secret),
            max_connections=1,
        )
        acks = []
        for round_ in range(2):  # each meter's connection was closed for the next one
            for m in meters:
                counters = range(10 * round_ + 1, 10 * round_ + 4)
                acks.append(
                    await link.exchange(m.meter_id, _packets(m, secure.world, counters), 10)
                )
        open_now = len(link._sessions)
        await link.close()
        await receiver.stop()
        await ingest.stop()
        return acks, open_now

    acks, open_now = asyncio.run(scenario())
    assert acks == [[Ack.ACCEPTED] * 3] * 6
    assert open_now == 1


def test_the_acl_gives_each_meter_its_own_topics_and_refuses_unusable_names() -> None:
    acl = mosquitto.acl_file(["M-1"], ["he-1"], prefix="p")
    assert "user he-1\ntopic read p/readings/+\ntopic write p/acks/+" in acl
    assert "user M-1\ntopic write p/readings/M-1\ntopic read p/acks/M-1" in acl
    assert "pattern" not in acl
    for bad in ["a b", "a:b", "a/b", "a+b", "#", ""]:
        with pytest.raises(ConfigurationError, match="cannot be an MQTT user name"):
            mosquitto.acl_file([bad], [])
    with pytest.raises(ConfigurationError, match="also a head-end"):
        mosquitto.acl_file(["he-1"], ["he-1"])


def test_a_refused_or_absent_broker_stops_the_receiver_with_one_line(secure: Secure) -> None:
    wrong = secure.broker.url().replace("mqtts://", "mqtts://headend-b:wrong-secret@")
    plain = f"mqtt://127.0.0.1:{secure.broker.plan.password_port}"

    async def start(url: str) -> str:
        receiver = secure.receiver(secure.ingest(MemorySink()), url)
        with pytest.raises(ConfigurationError) as caught:
            await receiver.start()
        return str(caught.value)

    for url, why in [(wrong, "authori"), (plain, "MQTT broker mqtt://127.0.0.1")]:
        message = asyncio.run(start(url))
        assert why in message
        assert "wrong-secret" not in message
        assert "\n" not in message


def test_password_lines_are_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    path = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(path), "M-1", "s3cret"], check=True)
    line = path.read_text().strip()
    salt = base64.b64decode(line.split("$")[3])
    assert mosquitto.password_line("M-1", "s3cret", salt) == line
