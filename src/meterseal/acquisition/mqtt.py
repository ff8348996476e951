"""MQTT transport: each meter publishes to its own topic, receivers share one subscription.

Meters publish each sealed packet (raw bytes, QoS 1) to ``{prefix}/readings/{meter_id}`` and
get ``{prefix}/acks/{meter_id}``: the packet's SHA-256 (32 bytes) and one `Ack` byte, QoS 1.
Receivers subscribe to ``$share/{group}/{prefix}/readings/+`` (MQTT v5), so the broker splits
the traffic among them. A packet is acknowledged twice, both only once `Ingest.submit`
returned, i.e. once it is durable or refused:

- to the meter by that ack; the meter resends what stays unacknowledged or RETRY;
- to the broker by the PUBACK. aiomqtt has no API for this, so the receiver reaches its paho
  client (``Client._client``) for manual acknowledgement. With a persistent session (clean
  start off, a session expiry) the broker redelivers whatever a crashed or stopped receiver
  had not acknowledged, and queues QoS 1 messages while it is away.

Who connects is an `MqttEndpoint` (URL with credentials and TLS). A receiver's client id is
stable and its own (`MqttEndpoint.session_id`): a restart resumes the session, and with the
shipped broker configuration (`acquisition.mosquitto`) nobody without its password or key
can take the session, or the readings queued for it, over.

Back-pressure: the receiver announces Receive Maximum = `max_inflight`, so the broker never
has more unacknowledged QoS 1 messages out to it than it may submit at once. Slow meters
talk to the broker, which hands over whole messages only, so they cannot hold a receiver;
the receiver's own link is watched by keepalive. The receiver holds no key.

Caveat (Mosquitto): a persistent session whose receiver is gone for good keeps getting its
share of the group until the session expires; the meters' resends then reach live receivers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from meterseal.acquisition.ingest import Ack, PacketIntake
from meterseal.acquisition.mqtt_endpoint import TOPIC_PREFIX, MqttEndpoint, random_client_id
from meterseal.acquisition.stages import Incoming
from meterseal.crypto.packet import MAX_PACKET_BYTES
from meterseal.errors import ConfigurationError
from meterseal.model import MAX_METER_ID_LENGTH

_DIGEST_BYTES = 32
_ACK_VALUES = frozenset(a.value for a in Ack)
# Small messages answered one by one: Nagle's algorithm would hold each back ~40 ms.
_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """Host and port of an ``mqtt://`` or ``mqtts://`` URL (ConfigurationError otherwise)."""
    endpoint = MqttEndpoint.parse(url)
    return endpoint.host, endpoint.port


def valid_meter_id(meter_id: str) -> bool:
    """Whether a topic's meter id segment is usable as an address (it proves nothing)."""
    return (
        0 < len(meter_id) <= MAX_METER_ID_LENGTH
        and meter_id.isprintable()
        and not any(c in "+#/" for c in meter_id)
    )


@dataclass
class MqttLimits:
    """Caps that keep a flood or a bad message from hurting the receiver."""

    max_payload: int = MAX_PACKET_BYTES  # larger payloads are counted and REJECTED
    max_message: int = 64 * 1024  # MQTT Maximum Packet Size: the broker drops bigger ones unseen
    max_inflight: int = 1024  # submits at once, and the Receive Maximum the broker must honour
    keepalive: int = 30  # seconds
    session_expiry: int = 86_400  # seconds the broker keeps our session (and queues) while away
    reconnect_delay: float = 1.0
    stop_grace: float = 10.0  # stop() waits this long for in-flight submits, then abandons them


class _Inbox(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue: drops QoS 0 messages beyond `maxsize`, never QoS 1 ones."""

    # A dropped QoS 1 message would hold a Receive Maximum slot at the broker until we
    # reconnect, so a QoS 0 flood could stall us. QoS 1 is bounded by Receive Maximum instead.
    def __init__(self, maxsize: int = 0) -> None:
        super().__init__()
        self.qos0_bound = maxsize

    def put_nowait(self, item: aiomqtt.Message) -> None:
        """Queue `item`; QueueFull (aiomqtt logs and drops it) for QoS 0 beyond the bound."""
        if item.qos == 0 and 0 < self.qos0_bound <= self.qsize():
            raise asyncio.QueueFull
        super().put_nowait(item)


@dataclass
class _InFlight:
    client: aiomqtt.Client  # the connection the message came on: only it can PUBACK the mid
    mid: int
    qos: int
    meter_id: str | None  # None: bad topic, nobody to answer
    digest: bytes
    answer: asyncio.Task[Ack] | Ack


class MqttReceiver:
    """Takes sealed packets from the broker into `Ingest`; acknowledges what is durable."""

    def __init__(
        self,
        ingest: PacketIntake,
        url: str | MqttEndpoint,
        *,
        limits: MqttLimits | None = None,
        client_id: str | None = None,
        group: str = "headend",
        prefix: str = TOPIC_PREFIX,
    ) -> None:
        self.ingest = ingest
        self.endpoint = url if isinstance(url, MqttEndpoint) else MqttEndpoint.parse(url)
        self.limits = limits or MqttLimits()
        # Stable per instance (see MqttEndpoint.session_id): a restart resumes the session.
        self.client_id = client_id or self.endpoint.session_id()
        self.subscription = f"$share/{group}/{prefix}/readings/+"
        self.prefix = prefix
        self.counts: Counter[str] = Counter()
        self._client: aiomqtt.Client | None = None
        self._inflight: asyncio.Queue[_InFlight] = asyncio.Queue(self.limits.max_inflight)
        self._reader: asyncio.Task[None] | None = None
        self._replier: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and subscribe, then serve; ConfigurationError in one line if that fails."""
        try:
            await self._connect()
        except (aiomqtt.MqttError, OSError) as exc:
            # Later losses are retried; a broker that refuses or is absent at start is a setting.
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigurationError(f"MQTT broker {self.endpoint.shown()}: {reason}") from None
        self._reader = asyncio.create_task(self._read(), name="mqtt-read")
        self._replier = asyncio.create_task(self._reply(), name="mqtt-reply")

    async def stop(self) -> None:
        """Stop taking messages, answer those in flight (up to stop_grace), then disconnect."""
        # Messages not taken yet stay unacknowledged: the broker redelivers them to the session.
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._inflight.join(), self.limits.stop_grace)
        # What is still unanswered is not PUBACKed either, so the broker redelivers it too.
        if self._replier is not None:
            self._replier.cancel()
            await asyncio.gather(self._replier, return_exceptions=True)
        while not self._inflight.empty():
            if isinstance(answer := self._inflight.get_nowait().answer, asyncio.Task):
                answer.cancel()
        if abandoned := self.counts["received"] - self.counts["answered"]:
            self.counts["abandoned_at_stop"] += abandoned
        await self._disconnect()

    async def _connect(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho
        properties.SessionExpiryInterval = self.limits.session_expiry
        properties.ReceiveMaximum = self.limits.max_inflight
        properties.MaximumPacketSize = self.limits.max_message
        client = aiomqtt.Client(
            **self.endpoint.client_options(),
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            keepalive=self.limits.keepalive,
            queue_type=_Inbox,
            max_queued_incoming_messages=self.limits.max_inflight,
            max_queued_outgoing_messages=4 * self.limits.max_inflight,
            max_inflight_messages=self.limits.max_inflight,
            socket_options=_NODELAY,
        )
        # Before connecting: a resumed session may redeliver at once.
        client._client.manual_ack_set(True)
        await client.__aenter__()
        self._client = client
        try:
            await _subscribe(client, self.subscription)
        except aiomqtt.MqttError:
            await self._disconnect()
            raise

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    async def _read(self) -> None:
        while True:
            try:
                if self._client is None:
                    await self._connect()
                client = self._client
                assert client is not None
                async for message in client.messages:
                    await self._take(client, message)
            except aiomqtt.MqttError:
                # What was not PUBACKed stays with the broker, which redelivers it on reconnect.
                self.counts["disconnected"] += 1
                await self._disconnect()
                await asyncio.sleep(self.limits.reconnect_delay)

    async def _take(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        self.counts["received"] += 1
        topic = message.topic.value
        data = message.payload
        readings, _, meter_id = topic.rpartition("/")
        # The meter id in the topic is only where the ack goes: the signature inside the
        # packet alone decides which meter sent it.
        answer: asyncio.Task[Ack] | Ack
        if readings != f"{self.prefix}/readings" or not valid_meter_id(meter_id):
            self.counts["bad_topic"] += 1
            answer, address = Ack.REJECTED, None
        elif not data:
            self.counts["empty_frame"] += 1
            answer, address = Ack.REJECTED, meter_id
        elif len(data) > self.limits.max_payload:
            self.counts["oversized_frame"] += 1
            answer, address = Ack.REJECTED, meter_id
        else:
            incoming = Incoming(data, time.time(), f"mqtt:{topic}")
            answer, address = asyncio.create_task(self.ingest.submit(incoming)), meter_id
        digest = hashlib.sha256(data).digest()
        # Blocks once max_inflight answers are outstanding (back-pressure towards the broker).
        await self._inflight.put(
            _InFlight(client, message.mid, message.qos, address, digest, answer)
        )

    async def _reply(self) -> None:
        # In arrival order, like the TCP receiver: MQTT wants QoS 1 PUBACKs in order too.
        while True:
            item = await self._inflight.get()
            ack = item.answer
            if isinstance(ack, asyncio.Task):
                try:
                    ack = await ack
                except Exception:
                    self.counts["submit_failed"] += 1
                    ack = Ack.RETRY
            client = self._client
            if item.meter_id is not None:
                topic = f"{self.prefix}/acks/{item.meter_id}"
                payload = item.digest + bytes((ack.value,))
                # paho directly, as aiomqtt's publish would await the broker's PUBACK of each
                # ack; a non-zero rc means it was not queued. The meter resends then.
                if client is None or client._client.publish(topic, payload, qos=1).rc:
                    self.counts["ack_unsent"] += 1
            # A mid is only meaningful on its own connection; after a reconnect the broker
            # redelivers the message instead. RETRY is PUBACKed too: the meter resends it.
            if item.qos > 0 and item.client is client:
                item.client._client.ack(item.mid, item.qos)
            self.counts["answered"] += 1
            self._inflight.task_done()


MeterPasswords = Callable[[str], str]  # a meter id -> the password it connects with


@dataclass
class _Session:
    client: aiomqtt.Client
    subscribed: set[str] = field(default_factory=set)
    waiting: dict[bytes, list[asyncio.Future[Ack]]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    users: int = 0  # exchanges using it now: never closed under them


class MqttLink:
    """A `MeterLink` over MQTT: broker connections reconnected when they fail.

    With `passwords`, each meter connects as itself (user name: its meter id), as a broker with
    per-meter ACLs requires; the `max_connections` most recently used stay open. Without, all
    meters share one connection as the URL's user (an open broker, or a concentrator's account).
    """

    def __init__(
        self,
        url: str | MqttEndpoint,
        *,
        prefix: str = TOPIC_PREFIX,
        keepalive: int = 30,
        passwords: MeterPasswords | None = None,
        max_connections: int = 256,
    ) -> None:
        self.endpoint = url if isinstance(url, MqttEndpoint) else MqttEndpoint.parse(url)
        self.prefix = prefix
        self.keepalive = keepalive
        self.passwords = passwords
        self.max_connections = max_connections
        self._options = self.endpoint.client_options()  # one TLS context for every connection
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        """Publish the packets; their acks in order, or TimeoutError/ConnectionError."""
        futures: list[tuple[bytes, asyncio.Future[Ack]]] = []
        session: _Session | None = None
        try:
            async with asyncio.timeout(timeout):
                session = await self._connected(meter_id)
                if meter_id not in session.subscribed:
                    # Before publishing, or an early ack would find nobody listening.
                    await _subscribe(session.client, f"{self.prefix}/acks/{meter_id}")
                    session.subscribed.add(meter_id)
                loop = asyncio.get_running_loop()
                for data in packets:  # identical packets queue up under one digest
                    digest, future = hashlib.sha256(data).digest(), loop.create_future()
                    session.waiting.setdefault(digest, []).append(future)
                    futures.append((digest, future))
                topic = f"{self.prefix}/readings/{meter_id}"
                await asyncio.gather(*(session.client.publish(topic, d, qos=1) for d in packets))
                return [await future for _, future in futures]
        except aiomqtt.MqttError as exc:
            raise ConnectionError(f"MQTT: {exc}") from exc
        finally:
            if session is not None:
                session.users -= 1
            for digest, future in futures:
                if not future.done() and session is not None:
                    waiters = session.waiting[digest]
                    waiters.remove(future)
                    if not waiters:
                        del session.waiting[digest]
                elif not future.cancelled():
                    future.exception()  # retrieved: a lost connection fails them all at once

    async def close(self) -> None:
        """Disconnect (exchanges still waiting fail with ConnectionError)."""
        for key in list(self._sessions):
            await self._drop(key)
        self._locks.clear()

    async def _drop(self, key: str) -> None:
        # The key's lock stays (a small object per meter): one deleted while a waiter is being
        # woken would let a second connection of the same meter be opened beside the first.
        session = self._sessions.pop(key, None)
        if session is not None and session.reader is not None:
            session.reader.cancel()
            await asyncio.gather(session.reader, return_exceptions=True)
            with contextlib.suppress(aiomqtt.MqttError):
                await session.client.__aexit__(None, None, None)

    async def _connected(self, meter_id: str) -> _Session:
        key = meter_id if self.passwords is not None else ""
        async with self._locks.setdefault(key, asyncio.Lock()):
            session = self._sessions.get(key)
            if session is None or session.reader is None or session.reader.done():
                await self._drop(key)
                session = await self._open(meter_id)
                self._sessions[key] = session
            self._sessions.move_to_end(key)
            session.users += 1
        # The least recently used connections nobody is using go beyond the cap.
        idle = [k for k, s in self._sessions.items() if not s.users and k != key]
        for old in idle[: len(self._sessions) - self.max_connections]:
            await self._drop(old)
        return session

    async def _open(self, meter_id: str) -> _Session:
        options = dict(self._options)
        if self.passwords is not None:
            options.update(username=meter_id, password=self.passwords(meter_id))
        client = aiomqtt.Client(
            **options,
            identifier=random_client_id("meter"),
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=self.keepalive,
            socket_options=_NODELAY,
        )
        client.pending_calls_threshold = 1 << 16  # a window of publishes is not a leak
        await client.__aenter__()
        session = _Session(client)
        session.reader = asyncio.create_task(self._read(session), name="mqtt-link-read")
        return session

    @staticmethod
    async def _read(session: _Session) -> None:
        try:
            async for message in session.client.messages:
                payload = message.payload
                if len(payload) != _DIGEST_BYTES + 1 or payload[-1] not in _ACK_VALUES:
                    continue
                # The oldest waiter for these bytes; an ack nobody waits for (a late one of a
                # timed-out exchange, the receiver answering a redelivery) is dropped.
                digest = payload[:_DIGEST_BYTES]
                waiters = session.waiting.get(digest)
                if waiters:
                    waiters.pop(0).set_result(Ack(payload[-1]))
                    if not waiters:
                        del session.waiting[digest]
        except aiomqtt.MqttError:
            pass
        finally:
            for waiters in session.waiting.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(ConnectionError("MQTT connection lost"))


async def _subscribe(client: aiomqtt.Client, topic: str) -> None:
    """Subscribe at QoS 1; a broker's refusal (its ACL) is an MqttError like a lost link."""
    granted = await client.subscribe(topic, qos=1)
    codes = [getattr(code, "value", code) for code in (granted or ())]
    if not codes or any(code >= 0x80 for code in codes):  # SUBACK reason codes: >= 0x80 refuse
        raise aiomqtt.MqttError(f"broker refused the subscription to {topic}")
