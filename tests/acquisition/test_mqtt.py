"""MQTT receiver + link against the real Mosquitto: acks only after storage, nothing lost."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.mqtt import (
    MqttLimits,
    MqttLink,
    MqttReceiver,
    _Inbox,
    parse_mqtt_url,
)
from meterseal.acquisition.mqtt_endpoint import MqttEndpoint
from meterseal.acquisition.records import AcceptedReading, Rejection, StoreOutcome
from meterseal.acquisition.stages import TrustedStages
from meterseal.crypto import packet
from meterseal.crypto.keys import MeterKey
from meterseal.crypto.suites import P256
from meterseal.errors import ConfigurationError
from meterseal.meter.faults import Fault, FaultPlan
from meterseal.meter.provisioning import provision, register_fleet
from meterseal.meter.simulator import SimulationReport, run_fleet, seal_meter, send_meter
from meterseal.model import Reading
from tests.conftest import NOW, World
from tests.services import require_service

T = NOW.timestamp()
URL = os.environ.get("MS_MQTT_URL", "mqtt://127.0.0.1:1883")


def _probe() -> None:
    async def connect() -> None:
        host, port = parse_mqtt_url(URL)
        async with aiomqtt.Client(host, port, timeout=3):
            pass

    asyncio.run(connect())


@dataclass(frozen=True)
class Names:
    """Topic prefix, shared-subscription group and client id unique to one test run."""

    prefix: str
    group: str
    client_id: str


def mqtt_names(unique: str) -> Names:
    """The MQTT names of a test, from its `unique_name`."""
    return Names(f"mstest/{unique}", f"g{unique}", f"mstest-{unique}")


@pytest.fixture
def names(unique_name: str) -> Names:
    """Skip (or fail) without a broker; otherwise names no other run or test uses."""
    require_service("Mosquitto", URL, _probe)
    return mqtt_names(unique_name)


def _packets(key: MeterKey, world: World, counters: range) -> list[bytes]:
    return [
        packet.seal(
            Reading(key.meter_id, c, int(T) - 900, 900, 7),
            key,
            world.headend.public(),
            key.suite,
            now=NOW,
            rng=os.urandom,
        )
        for c in counters
    ]


def _ingest(world: World, sink: MemorySink) -> Ingest:
    return Ingest(
        TrustedStages(world.headend, world.registry, Anonymizer(b"q" * 32)), sink, clock=lambda: T
    )


def _receiver(
    ingest: Ingest, names: Names, *, reconnect_delay: float = 1.0, stop_grace: float = 10.0
) -> MqttReceiver:
    # A short session expiry: the broker forgets these test sessions soon after the run.
    limits = MqttLimits(session_expiry=60, reconnect_delay=reconnect_delay, stop_grace=stop_grace)
    return MqttReceiver(
        ingest,
        URL,
        limits=limits,
        client_id=names.client_id,
        group=names.group,
        prefix=names.prefix,
    )


async def _publish_raw(names: Names, items: Sequence[tuple[str, bytes]]) -> None:
    """Publish (meter topic segment, payload) pairs once each, bypassing the link."""
    host, port = parse_mqtt_url(URL)
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for segment, payload in items:
            await client.publish(f"{names.prefix}/readings/{segment}", payload, qos=1)


async def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def test_parse_mqtt_url() -> None:
    assert parse_mqtt_url("mqtt://broker.example:1884") == ("broker.example", 1884)
    assert parse_mqtt_url("mqtt://127.0.0.1") == ("127.0.0.1", 1883)
    assert parse_mqtt_url("mqtts://broker.example") == ("broker.example", 8883)
    with pytest.raises(ConfigurationError, match="mqtt://"):
        parse_mqtt_url("http://127.0.0.1:1883")


def test_an_endpoint_carries_credentials_and_tls_files_but_never_shows_a_password(
    tmp_path: Path,
) -> None:
    url = "mqtts://head%40end:s3cret@broker.example:8883?ca=/etc/ca.pem&client_id=he-1"
    endpoint = MqttEndpoint.parse(url)
    assert (endpoint.username, endpoint.password) == ("head@end", "s3cret")
    assert (endpoint.tls, endpoint.ca_file, endpoint.session_id()) == (
        True,
        Path("/etc/ca.pem"),
        "he-1",
    )
    assert "s3cret" not in endpoint.shown()
    assert "s3cret" not in repr(endpoint)
    assert (
        endpoint.shown()
        == "mqtts://head%40end@broker.example:8883?ca=%2Fetc%2Fca.pem&client_id=he-1"
    )
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    assert MqttEndpoint.parse(f"mqtts://he@b?password_file={secret}").password == "from-a-file"
    assert MqttEndpoint.parse("mqtts://he@b").session_id() == "he"  # the user name
    for bad, why in [
        ("mqtt://u:pw@b?ca=/ca.pem", "need mqtts"),
        ("mqtts://u:pw@b?cert=/c.pem", "together"),
        ("mqtts://u:pw@b?cat=/ca.pem", "got cat"),
        ("mqtts://u:pw@b:99999", "bad MQTT URL"),
        (f"mqtts://u:pw@b?password_file={secret}", "not both"),
    ]:
        with pytest.raises(ConfigurationError, match=why) as caught:
            MqttEndpoint.parse(bad)
        assert "pw" not in str(caught.value)


def test_packets_of_two_meters_are_stored_then_acked(world: World, names: Names) -> None:
    a, b = world.meters["p256"], world.meters["ed25519"]

    async def scenario() -> None:
        sink = MemorySink()
        ingest = _ingest(world, sink)
        await ingest.start()
        receiver = _receiver(ingest, names)
        await receiver.start()
        link = MqttLink(URL, prefix=names.prefix)
        from_a, from_b = _packets(a, world, range(1, 21)), _packets(b, world, range(1, 11))
        acks_a, acks_b = await asyncio.gather(
            link.exchange(a.meter_id, [*from_a, from_a[0]], 5),  # the same packet twice
            link.exchange(b.meter_id, from_b, 5),
        )
        again = await link.exchange(a.meter_id, from_a[:2], 5)  # a resend, later
        await link.close()
        await receiver.stop()
        await ingest.stop()
        assert acks_a == [Ack.ACCEPTED] * 21
        assert acks_b == [Ack.ACCEPTED] * 10
        assert again == [Ack.ACCEPTED] * 2
        assert set(sink.originals) == {(a.meter_id, c) for c in range(1, 21)} | {
            (b.meter_id, c) for c in range(1, 11)
        }
        assert ingest.stages.counts["stored"] == 30
        assert ingest.stages.counts["duplicate"] == 3
        assert sink.quarantine == []
        assert receiver.counts["received"] == 33
        assert receiver.counts["disconnected"] == 0

    asyncio.run(scenario())


def test_bad_input_is_counted_and_good_data_interleaved_with_it_is_kept(
    world: World, names: Names
) -> None:
    key = world.meters["p256"]

    async def scenario() -> None:
        sink = MemorySink()
        ingest = _ingest(world, sink)
        await ingest.start()
        receiver = _receiver(ingest, names)
        await receiver.start()
        link = MqttLink(URL, prefix=names.prefix)
        good = _packets(key, world, range(100, 130))
        oversized = os.urandom(packet.MAX_PACKET_BYTES + 1)
        mixed = [*good[:10], b"\x00junk", *good[10:20], b"", oversized, *good[20:]]
        # Addressed to nobody usable: dropped, counted, never answered. (The broker itself
        # disconnects a publisher whose topic holds control characters.)
        await _publish_raw(names, [("", good[0]), ("x" * 65, good[1]), ("a\u200bb", good[2])])
        # Over the Maximum Packet Size the receiver announced: the broker drops it for us.
        await _publish_raw(names, [(key.meter_id, os.urandom(100_000))])
        acks = await link.exchange(key.meter_id, mixed, 5)
        await _eventually(lambda: receiver.counts["bad_topic"] == 3)
        later = await link.exchange(key.meter_id, _packets(key, world, range(130, 135)), 5)
        await link.close()
        await receiver.stop()
        await ingest.stop()
        assert (
            acks
            == [Ack.ACCEPTED] * 10
            + [Ack.REJECTED]
            + [Ack.ACCEPTED] * 10
            + [Ack.REJECTED] * 2
            + [Ack.ACCEPTED] * 10
        )
        assert later == [Ack.ACCEPTED] * 5
        assert set(sink.originals) == {(key.meter_id, c) for c in range(100, 135)}
        assert sink.reasons() == ["malformed"]
        assert receiver.counts["empty_frame"] == 1
        assert receiver.counts["oversized_frame"] == 1
        assert receiver.counts["bad_topic"] == 3
        assert receiver.counts["disconnected"] == 0

    asyncio.run(scenario())


def test_store_failure_means_retry_then_a_resend_is_accepted(world: World, names: Names) -> None:
    key = world.meters["p256"]

    async def scenario() -> None:
        sink = MemorySink()
        sink.fail = True
        ingest = _ingest(world, sink)
        await ingest.start()
        receiver = _receiver(ingest, names)
        await receiver.start()
        link = MqttLink(URL, prefix=names.prefix)
        packets = _packets(key, world, range(200, 205))
        failed = await link.exchange(key.meter_id, packets, 5)
        sink.fail = False
        again = await link.exchange(key.meter_id, packets, 5)
        await link.close()
        await receiver.stop()
        await ingest.stop()
        assert failed == [Ack.RETRY] * 5
        assert again == [Ack.ACCEPTED] * 5
        assert set(sink.originals) == {(key.meter_id, c) for c in range(200, 205)}

    asyncio.run(scenario())


def test_link_times_out_without_a_receiver(names: Names) -> None:
    async def scenario() -> None:
        link = MqttLink(URL, prefix=names.prefix)
        with pytest.raises(TimeoutError):
            await link.exchange("M-nobody", [b"sealed"], 0.3)
        await link.close()

    asyncio.run(scenario())


def test_receiver_reconnects_after_losing_the_broker(world: World, names: Names) -> None:
    key = world.meters["p256"]

    async def scenario() -> None:
        sink = MemorySink()
        ingest = _ingest(world, sink)
        await ingest.start()
        receiver = _receiver(ingest, names, reconnect_delay=0.1)
        await receiver.start()
        # The same client id connecting takes the session over: the broker drops the receiver.
        intruder = _receiver(ingest, names)
        await intruder.start()
        await intruder.stop()
        await _eventually(lambda: receiver.counts["disconnected"] >= 1)
        link = MqttLink(URL, prefix=names.prefix)
        acks = await link.exchange(key.meter_id, _packets(key, world, range(500, 505)), 5)
        await link.close()
        await receiver.stop()
        await ingest.stop()
        assert acks == [Ack.ACCEPTED] * 5
        assert set(sink.originals) == {(key.meter_id, c) for c in range(500, 505)}

    asyncio.run(scenario())


def test_a_qos0_flood_cannot_push_out_qos1_messages() -> None:
    inbox = _Inbox(maxsize=2)

    def message(qos: int, mid: int) -> aiomqtt.Message:
        return aiomqtt.Message("meterseal/v1/readings/M", b"x", qos, False, mid, None)

    inbox.put_nowait(message(0, 0))
    inbox.put_nowait(message(0, 0))
    with pytest.raises(asyncio.QueueFull):
        inbox.put_nowait(message(0, 0))
    inbox.put_nowait(message(1, 7))  # bounded by the broker's Receive Maximum instead
    assert inbox.qsize() == 3


class _HungSink(MemorySink):
    """A store that hangs until released, then fails: the receiver must not ack meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def save_batch(
        self, accepted: Sequence[AcceptedReading], rejected: Sequence[Rejection]
    ) -> list[StoreOutcome]:
        self.entered.set()
        self.release.wait(10)
        raise OSError("store hung, then died")


def test_broker_redelivers_what_a_stopped_receiver_never_acknowledged(
    world: World, names: Names
) -> None:
    key = world.meters["p256"]
    packets = _packets(key, world, range(300, 310))

    async def scenario() -> tuple[MqttReceiver, MemorySink, Ingest]:
        hung = _HungSink()
        first_ingest = _ingest(world, hung)
        await first_ingest.start()
        first = _receiver(first_ingest, names, stop_grace=0.2)
        await first.start()
        await _publish_raw(names, [(key.meter_id, p) for p in packets])  # each sent once only
        await asyncio.to_thread(hung.entered.wait, 5)
        await _eventually(lambda: first.counts["received"] == 10)
        await first.stop()  # the store still hangs: nothing may be PUBACKed
        hung.release.set()
        await first_ingest.stop()
        assert first.counts["abandoned_at_stop"] > 0
        assert hung.originals == {}

        sink = MemorySink()
        ingest = _ingest(world, sink)
        await ingest.start()
        second = _receiver(ingest, names)  # same client id: resumes the persistent session
        await second.start()
        await _eventually(lambda: len(sink.originals) == 10)
        await second.stop()
        await ingest.stop()
        return second, sink, ingest

    second, sink, ingest = asyncio.run(scenario())
    assert set(sink.originals) == {(key.meter_id, c) for c in range(300, 310)}
    assert ingest.stages.counts["stored"] == 10
    assert second.counts["received"] == 10  # redelivered by the broker, exactly those


def test_readings_sent_while_no_receiver_runs_are_stored_once(world: World, names: Names) -> None:
    key = world.meters["p256"]
    wire = [(Fault.NONE, p) for p in _packets(key, world, range(400, 420))]

    async def scenario() -> tuple[MemorySink, Ingest, SimulationReport]:
        sink = MemorySink()
        ingest = _ingest(world, sink)
        await ingest.start()
        receiver = _receiver(ingest, names)
        await receiver.start()  # creates the persistent session...
        await receiver.stop()  # ...which the broker keeps, queueing for it
        link = MqttLink(URL, prefix=names.prefix)
        report = SimulationReport()
        meter = asyncio.create_task(send_meter(link, key.meter_id, wire, report, timeout=0.5))
        await asyncio.sleep(1.2)  # the meter times out and resends meanwhile
        assert not meter.done()
        restarted = _receiver(ingest, names)
        await restarted.start()
        await asyncio.wait_for(meter, 10)
        await link.close()
        await restarted.stop()
        await ingest.stop()
        return sink, ingest, report

    sink, ingest, report = asyncio.run(scenario())
    assert report.connection_errors >= 1  # there were timeouts, hence resends
    assert report.acks["accepted"] == 20
    assert set(sink.originals) == {(key.meter_id, c) for c in range(400, 420)}
    assert ingest.stages.counts["stored"] == 20
    assert ingest.stages.counts["duplicate"] >= 20  # queued copies and resends, stored once


def test_fleet_simulator_over_mqtt_stores_every_reading(world: World, names: Names) -> None:
    meters = provision(world.ca_key, world.ca_cert, 3, P256, now=NOW, prefix="MQSIM", workers=1)
    register_fleet(world.registry, meters)
    start = int(T) - 30 * 900
    wire = {
        m.key.meter_id: seal_meter(
            m,
            [Reading(m.key.meter_id, c, start + c * 900, 900, 50 + c) for c in range(1, 26)],
            world.headend.public(),
            plan=FaultPlan(),
            seed=11,
            now=NOW,
        )
        for m in meters
    }

    async def scenario() -> tuple[MemorySink, SimulationReport]:
        sink = MemorySink()
        ingest = _ingest(world, sink)
        await ingest.start()
        receiver = _receiver(ingest, names)
        await receiver.start()
        link = MqttLink(URL, prefix=names.prefix)
        report = await run_fleet(wire, link, concurrency=3, window=8)
        await link.close()
        await receiver.stop()
        await ingest.stop()
        return sink, report

    sink, report = asyncio.run(scenario())
    assert report.connection_errors == 0
    assert report.acks == {"accepted": 75}
    assert set(sink.originals) == {(m.key.meter_id, c) for m in meters for c in range(1, 26)}
