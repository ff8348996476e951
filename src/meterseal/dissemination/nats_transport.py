"""NATS transport: the router node as a service, and members that join and publish through it.

Core NATS request/reply and plain subjects (see `node` for the subject layout). What NATS
carries is the admission request (public facts: name, role, key, quote, predicates), the
signed HPKE-sealed handouts, and link-sealed frames: it never sees a header or a payload.
A publisher keeps at most `window` frames unanswered by the router, which gives back-pressure
(the paper's bus held producers off the same way once its queues were full).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

from meterseal.dissemination.errors import AdmissionRefused, DisseminationError, Reason
from meterseal.dissemination.frames import Link
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.member import MemberClient
from meterseal.dissemination.node import DEFAULT_NAMESPACE, RouterNode
from meterseal.dissemination.subscription import Subscription
from meterseal.trust.attestation import Attester
from meterseal.trust.measurement import Measurement

Delivered = Callable[[list[bytes]], Awaitable[None]]  # a flat batch: header, sealed, …
Clock = Callable[[], float]
# A batch of deliveries can be large; the router's subscription must not drop frames.
PENDING_BYTES = 512 * 1024 * 1024

JOIN_RETRY_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8)  # seconds between join requests nobody took


def requester_of(reply: str) -> str:
    """Who asked, from the inbox a request's answer goes to: less its per-request token
    (nats-py answers every request of one connection under `_INBOX.<nuid>.<token>`), but a
    two-token inbox whole (`_INBOX.<nuid>`: an inbox per request, as nats-py's old-style
    requests make, which would otherwise all be one requester, `_INBOX`)."""
    head, _, _ = reply.rpartition(".")
    return head if "." in head else reply


async def serve_node(
    nc: Client,
    node: RouterNode,
    *,
    clock: Clock = time.time,
    observe: Callable[[float], None] | None = None,
) -> list[Any]:
    """Answer the node's subjects on `nc`; the NATS subscriptions (unsubscribe to stop).

    `observe`, if given, gets the seconds each frame of publications took to route.
    """

    async def send(outgoing: list[tuple[str, bytes]]) -> None:
        for subject, data in outgoing:
            await nc.publish(subject, data)

    async def challenge(msg: Msg) -> None:
        if not msg.reply:
            return  # nobody to give a nonce to: issuing one would only hold a place
        requester = requester_of(msg.reply)
        await msg.respond(node.on_challenge(msg.data, now=clock(), requester=requester))

    async def admit(msg: Msg) -> None:
        await msg.respond(node.on_admit(msg.data, now=clock()))

    async def publications(msg: Msg) -> None:
        publisher = msg.subject.rsplit(".", 1)[-1]
        started = time.perf_counter()
        answer, outgoing = node.on_publications(publisher, msg.data)
        if observe is not None:
            observe(time.perf_counter() - started)
        await send(outgoing)
        if msg.reply:
            await msg.respond(answer)

    async def leave(msg: Msg) -> None:
        member = msg.subject.rsplit(".", 1)[-1]
        answer, outgoing = node.on_leave(member, msg.data, now=clock())
        await send(outgoing)
        await msg.respond(answer)

    async def operator(msg: Msg) -> None:
        answer, outgoing = node.on_operator(msg.data, now=clock())
        await send(outgoing)
        await msg.respond(answer)

    subscriptions = [
        await nc.subscribe(node.subject("challenge"), cb=challenge),
        await nc.subscribe(node.subject("admit"), cb=admit),
        await nc.subscribe(
            node.subject("pub", "*"), cb=publications, pending_bytes_limit=PENDING_BYTES
        ),
        await nc.subscribe(node.subject("op"), cb=operator),
        await nc.subscribe(node.subject("leave", "*"), cb=leave),
    ]
    await nc.flush()  # registered at the server before anyone is told the node is up
    return subscriptions


def _answer(data: bytes) -> dict[str, Any]:
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise DisseminationError(
            Reason.MALFORMED_REQUEST, "the router's reply is not CBOR"
        ) from exc
    if type(value) is not dict or type(value.get("ok")) is not bool:
        raise DisseminationError(Reason.MALFORMED_REQUEST, "the router's reply is not a map")
    return value


def _raise_refusal(answer: dict[str, Any]) -> None:
    if not answer["ok"]:
        try:
            reason = Reason(str(answer.get("reason")))
        except ValueError:
            reason = Reason.MALFORMED_REQUEST
        raise AdmissionRefused(reason, str(answer.get("detail", "")))


class NatsMember:
    """A member on NATS: joins through the router node, receives frames, publishes frames."""

    def __init__(
        self,
        nc: Client,
        client: MemberClient,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        window: int = 8,
        timeout: float = 10.0,
    ) -> None:
        self.nc = nc
        self.client = client
        self.namespace = namespace
        self.timeout = timeout
        self.link: Link | None = None
        self.counters: Counter[str] = Counter()
        self._window = asyncio.Semaphore(window)
        self._pending: set[asyncio.Task[None]] = set()
        self._subscriptions: list[NatsSubscription] = []
        self.refused: list[list[Any]] = []

    def _subject(self, kind: str, member: str = "") -> str:
        return f"{self.namespace}.{kind}.{member}" if member else f"{self.namespace}.{kind}"

    async def _request(self, subject: str, data: bytes) -> dict[str, Any]:
        # No responders: the router is not (or not yet, or no longer) subscribed, as while it
        # restarts. The request never reached it, so asking again is safe; a while, not forever.
        for pause in JOIN_RETRY_PAUSES:
            try:
                message = await self.nc.request(subject, data, timeout=self.timeout)
                return _answer(message.data)
            except NoRespondersError:
                self.counters["no_responders"] += 1
                await asyncio.sleep(pause)
        message = await self.nc.request(subject, data, timeout=self.timeout)
        return _answer(message.data)

    async def join(
        self,
        subscriptions: tuple[tuple[PrivacyLevel, Subscription], ...] = (),
        *,
        on_delivery: Delivered | None = None,
        attester: Attester | None = None,
        measurement: Measurement | None = None,
    ) -> None:
        """Challenge, attested request, handout; then listen for deliveries and handouts."""
        name = self.client.name
        answer = await self._request(self._subject("challenge"), name.encode())
        _raise_refusal(answer)
        request = self.client.request(
            answer["nonce"], subscriptions, attester=attester, measurement=measurement
        )
        answer = await self._request(self._subject("admit"), request.encode())
        _raise_refusal(answer)
        self.client.accept(answer["handout"])
        assert self.client.link_key is not None
        self.link = Link(self.client.link_key)
        self._subscriptions.append(
            await self.nc.subscribe(self._subject("keys", name), cb=self._on_handout)
        )
        if on_delivery is not None:
            self._subscriptions.append(
                await self.nc.subscribe(
                    self._subject("sub", name),
                    cb=self._delivery(on_delivery),
                    pending_bytes_limit=PENDING_BYTES,
                )
            )
        await self.nc.flush()

    async def attach(self, on_delivery: Delivered) -> None:
        """Listen as a member admitted earlier (its client already holds keys and link)."""
        if self.client.link_key is None:
            raise DisseminationError(Reason.UNKNOWN_LINK, "the member was never admitted")
        self.link = Link(self.client.link_key)
        self._subscriptions.append(
            await self.nc.subscribe(self._subject("keys", self.client.name), cb=self._on_handout)
        )
        self._subscriptions.append(
            await self.nc.subscribe(
                self._subject("sub", self.client.name),
                cb=self._delivery(on_delivery),
                pending_bytes_limit=PENDING_BYTES,
            )
        )
        await self.nc.flush()

    async def _on_handout(self, msg: Msg) -> None:
        try:
            self.client.accept(msg.data)
            self.counters["handouts"] += 1
        except DisseminationError as exc:
            self.counters[f"refused_{exc.reason.value}"] += 1

    def _delivery(self, handler: Delivered) -> Callable[[Msg], Awaitable[None]]:
        async def on_frame(msg: Msg) -> None:
            assert self.link is not None
            try:
                elements = self.link.open(msg.subject, msg.data)
            except DisseminationError as exc:
                self.counters[f"refused_{exc.reason.value}"] += 1
                return
            self.counters["frames"] += 1
            await handler(elements)

        return on_frame

    async def send(self, elements: list[bytes]) -> None:
        """Publish one frame of a flat batch (header, sealed, header, sealed, …; one
        publication `[header, sealed]` is a batch of one), waiting only while `window`
        frames are unanswered."""
        assert self.link is not None, "join first"
        subject = self._subject("pub", self.client.name)
        frame = self.link.seal(subject, elements, os.urandom)  # seq fixed here, in order
        await self._window.acquire()
        task = asyncio.create_task(self._await_reply(subject, frame))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _await_reply(self, subject: str, frame: bytes) -> None:
        try:
            answer = await self._request(subject, frame)
            if not answer["ok"]:
                self.counters[f"refused_{answer.get('reason')}"] += 1
            elif answer.get("refused"):
                self.refused.extend(answer["refused"])
        except (TimeoutError, DisseminationError, NatsError) as exc:
            self.counters[f"send_failed_{type(exc).__name__}"] += 1
        finally:
            self._window.release()

    async def drain(self) -> None:
        """Wait until every frame sent has been answered by the router."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    async def leave(self) -> None:
        """After every frame is answered, tell the router this member is done: it removes
        the member (the keys it held rotate), so the same name may be admitted again."""
        await self.drain()
        assert self.link is not None, "join first"
        subject = self._subject("leave", self.client.name)
        answer = await self._request(subject, self.link.seal(subject, [], os.urandom))
        _raise_refusal(answer)
        await self.close()

    async def close(self) -> None:
        """Stop listening."""
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()


async def operator_request(
    nc: Client, command: bytes, *, namespace: str = DEFAULT_NAMESPACE, timeout: float = 5.0
) -> dict[str, Any]:
    """Send an operator command (see node.operator_command) and return the router's answer."""
    message = await nc.request(f"{namespace}.op", command, timeout=timeout)
    return _answer(message.data)
