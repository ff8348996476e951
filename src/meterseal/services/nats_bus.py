"""The bus on NATS JetStream (nats-py): file-backed work-queue streams, shared pull consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from meterseal.runtime.nats_endpoint import NatsEndpoint
from meterseal.runtime.nats_endpoint import connect as connect_endpoint
from meterseal.services.bus import (
    DEFAULT_ACK_WAIT,
    MAX_MESSAGE_BYTES,
    STREAMS,
    BusError,
    Consumer,
    Delivery,
)

log = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
_MORE_WAIT = 0.002  # seconds to collect what is already queued behind a first message


def nats_url() -> str:
    """MS_NATS_URL (``nats://`` or ``tls://``: runtime/nats_endpoint.py), or the local server."""
    return os.environ.get("MS_NATS_URL", DEFAULT_NATS_URL)


async def connect_nats(url: str, **options: object) -> Client:
    """A NATS connection to `url` (``nats://`` or ``tls://``); BusError in one line if none.

    nats-py's default error callback logs a traceback per failed try; here a failure to
    connect is the one BusError (no password or token in it), later losses a warning line.
    """
    shown = NatsEndpoint.parse(url).shown()
    errors: list[Exception] = []

    async def note(exc: Exception) -> None:
        errors.append(exc)
        if connected:
            log.warning("NATS %s: %s", shown, exc or type(exc).__name__)

    async def note_loss() -> None:
        if connected and client.is_reconnecting:  # not when closed on purpose
            log.warning("NATS %s: connection lost, reconnecting", shown)

    connected = False
    options.setdefault("connect_timeout", 3)
    try:
        client = await connect_endpoint(url, error_cb=note, disconnected_cb=note_loss, **options)
    except (TimeoutError, OSError, NatsError) as exc:
        reason = errors[-1] if errors else exc
        raise BusError(
            f"cannot reach NATS at {shown}: {reason or type(reason).__name__} "
            "(is nats-server running there, and the URL's user and password right?)"
        ) from exc
    connected = True
    return client


@dataclass
class _NatsDelivery:
    msg: Msg

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def attempt(self) -> int:
        return int(self.msg.metadata.num_delivered)

    @property
    def sequence(self) -> int:
        return int(self.msg.metadata.sequence.stream)

    async def ack(self) -> None:
        # ack_sync: the ack is confirmed, so the message will not come back to anyone.
        try:
            await self.msg.ack_sync(timeout=5.0)
        except (TimeoutError, NatsError) as exc:
            raise BusError(f"ack not confirmed: {exc}") from exc

    async def nak(self) -> None:
        await self.msg.nak()


@dataclass
class _NatsConsumer:
    subscription: JetStreamContext.PullSubscription

    async def fetch(self, batch: int, timeout: float) -> Sequence[Delivery]:
        # Wait for one message only: a pull for `batch` holds until the batch is full or the
        # request expires, which would delay a lone packet by up to `timeout` at every stage.
        # Then take whatever else is already there without waiting (a no-wait pull).
        try:
            messages = await self.subscription.fetch(1, timeout=timeout)
        except (NatsTimeout, TimeoutError):  # nats-py raises either, depending on the path
            return []
        if batch > 1:
            with contextlib.suppress(NatsTimeout, TimeoutError):
                messages += await self.subscription.fetch(batch - 1, timeout=_MORE_WAIT)
        return [_NatsDelivery(m) for m in messages]

    async def pending(self) -> int:
        info = await self.subscription.consumer_info()
        return int(info.num_pending or 0)


_OWNED_BY = "meterseal deployment CA sha256 "  # a stream's description: whose it is


class NatsBus:
    """JetStream streams on one NATS connection."""

    def __init__(
        self, client: Client, ack_wait: float = DEFAULT_ACK_WAIT, prefix: str = "", owner: str = ""
    ) -> None:
        self.client = client
        self.js = client.jetstream()
        self.ack_wait = ack_wait
        self.prefix = prefix  # isolates tests and benchmarks sharing one server
        self.owner = owner  # the deployment's identity (its CA); '' for tools and benches

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        ack_wait: float = DEFAULT_ACK_WAIT,
        prefix: str = "",
        owner: str = "",
    ) -> NatsBus:
        """Connect and make sure every stream exists (and, given `owner`, is this deployment's)."""
        target = url or nats_url()
        client = await connect_nats(target, max_reconnect_attempts=5, allow_reconnect=True)
        bus = cls(client, ack_wait, prefix, owner)
        try:
            await bus.ensure_streams()
        except (ServiceUnavailableError, NoRespondersError, NatsTimeout, TimeoutError) as exc:
            await client.close()
            raise BusError(
                f"NATS at {NatsEndpoint.parse(target).shown()} has no JetStream "
                "(start nats-server with -js)"
            ) from exc
        except BusError:
            await client.close()
            raise
        return bus

    def not_ready(self) -> str | None:
        """Why the bus cannot carry messages now (connection lost or closed); else None."""
        if self.client.is_connected:
            return None
        state = "closed" if self.client.is_closed else "lost, reconnecting"
        return f"the NATS connection is {state}"

    def stream_name(self, stream: str) -> str:
        """The JetStream stream holding `stream` under this bus's prefix."""
        return f"{self.prefix.upper()}{stream}"

    def subject(self, stream: str) -> str:
        """The subject of `stream` under this bus's prefix."""
        return f"{self.prefix.lower()}{STREAMS[stream]}"

    async def ensure_streams(self) -> None:
        """Create the work-queue streams (file storage) that do not exist yet.

        With an owner, a stream is created saying whose it is, and one that says it is
        another deployment's is refused (BusError).
        """
        owned = f"{_OWNED_BY}{self.owner}" if self.owner else None
        for stream in STREAMS:
            config = StreamConfig(
                name=self.stream_name(stream),
                description=owned,
                subjects=[self.subject(stream)],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=120.0,
                max_msg_size=MAX_MESSAGE_BYTES,
            )
            try:
                info = await self.js.stream_info(config.name or "")
                self._check_owner(info)
            except NotFoundError:
                try:
                    await self.js.add_stream(config)
                except BadRequestError as exc:  # another process created it meanwhile
                    if "already in use" not in str(exc):
                        raise BusError(f"cannot create stream {config.name}: {exc}") from exc

    def _check_owner(self, info: StreamInfo) -> None:
        """Refuse a stream of this prefix that another deployment made (shared names)."""
        said = info.config.description or ""
        if not self.owner or not said.startswith(_OWNED_BY) or said == f"{_OWNED_BY}{self.owner}":
            return
        # Their workers and ours would take each other's packets, fail to open them and
        # quarantine them in the wrong store.
        raise BusError(
            f"stream {info.config.name} belongs to another deployment "
            f"({said.removeprefix(_OWNED_BY)[:16]}…, this one is {self.owner[:16]}…): give this "
            "deployment a name of its own (deployment.name in meterseal.toml, or --prefix); if "
            f"the other one is gone: meterseal service streams --prefix {self.prefix} --delete"
        )

    async def delete_streams(self) -> list[str]:
        """Drop every stream of this prefix; the names of those that existed."""
        deleted = []
        for stream in STREAMS:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(self.stream_name(stream))
                deleted.append(self.stream_name(stream))
        return deleted

    async def streams(self, *, every_prefix: bool = False) -> list[tuple[str, int]]:
        """(name, messages) of this prefix's streams, or of every prefix's (`every_prefix`)."""
        found: list[StreamInfo] = []
        while True:  # the server answers a page of streams at a time
            page = await self.js.streams_info(offset=len(found))
            found += page
            if not page:
                break
        ours = [self.stream_name(s) for s in STREAMS]
        return sorted(
            (info.config.name or "", int(info.state.messages))
            for info in found
            if info.config.name in ours
            or (every_prefix and (info.config.name or "").endswith(tuple(STREAMS)))
        )

    async def publish(self, stream: str, data: bytes, *, msg_id: str) -> None:
        """Publish and wait for the stream's acknowledgement (durable on the server)."""
        try:
            await self.js.publish(
                self.subject(stream), data, timeout=10.0, headers={"Nats-Msg-Id": msg_id}
            )
        except (TimeoutError, NatsError) as exc:
            raise BusError(f"publish to {stream} failed: {exc}") from exc

    async def consumer(self, stream: str, durable: str) -> Consumer:
        """Bind to the shared durable pull consumer (created on first use)."""
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_ack_pending=20_000,
            max_deliver=-1,
        )
        subscription = await self.js.pull_subscribe(
            self.subject(stream),
            durable=f"{self.prefix}{durable}",
            stream=self.stream_name(stream),
            config=config,
        )
        return _NatsConsumer(subscription)

    async def notify(self, subject: str, data: bytes) -> None:
        """Core NATS publish: only current listeners get it."""
        await self.client.publish(f"{self.prefix.lower()}{subject}", data)

    async def listen(self, subject: str) -> asyncio.Queue[bytes]:
        """Subscribe; messages land in the returned queue."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def deliver(msg: Msg) -> None:
            queue.put_nowait(msg.data)

        await self.client.subscribe(f"{self.prefix.lower()}{subject}", cb=deliver)
        await self.client.flush()
        return queue

    async def close(self) -> None:
        """Drain and close the connection."""
        if not self.client.is_closed:
            try:
                await asyncio.wait_for(self.client.drain(), 5.0)
            except (TimeoutError, NatsError):
                await self.client.close()
