"""A customer's apps and consent, through the router's operator channel (as the CLI's).

The router holds consent (dissemination: `Authority.grant_consent` / `revoke_consent`); the
bills app reaches it as `meterseal router consent` does: an operator command signed with the
operator key, sent over NATS to `NS.op` (or, in one process, straight to a `RouterNode`).
Consent names pseudonyms, one per meter; this module derives them from the signed-in
customer's id with the deployment's anonymization key and the store, so a customer can only
ever name their own meters: the page never takes a pseudonym or a customer id from the form.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.dissemination.customers import MeterPseudonym, customer_pseudonyms
from meterseal.dissemination.node import operator_command
from meterseal.errors import MetersealError
from meterseal.storage import Store

# Sends one signed operator command, returns the router's reply bytes.
Channel = Callable[[bytes], Awaitable[bytes]]

# What each kind of member receives of a customer's data (levels.GRANTS), for people.
RECEIVES = {
    "utility": "your load per hour (MODERATE: one figure per hour, per customer)",
    "aggregator": "your raw readings, to compute regional loads (HIGH; an attested service)",
    "public_app": "regional loads only (LOW: sums over k meters or more)",
}
WITH_CONSENT = "your raw readings (HIGH: every reading of your meters) and regional loads"
WITHOUT_CONSENT = "regional loads only (LOW: sums over k meters or more), none of your readings"


class RouterUnreachable(MetersealError):
    """The router did not answer (or refused): consent cannot be shown or changed now."""


class PartlyChanged(RouterUnreachable):
    """The router stopped answering after the change was made for some meters (`done`)."""

    def __init__(self, message: str, done: tuple[str, ...]) -> None:
        super().__init__(message)
        self.done = done


@dataclass(frozen=True)
class AppRow:
    """One member that receives data: its name, role, admission state, and what it gets."""

    name: str
    role: str
    state: str
    consented: bool
    receives: str


@dataclass(frozen=True)
class ConsentView:
    """What the customer's page shows: their meters and the members receiving data."""

    meters: tuple[MeterPseudonym, ...]
    apps: tuple[AppRow, ...]  # members of role app: consent is theirs to give
    others: tuple[AppRow, ...]  # utility, aggregators, public apps: by role, not by consent


def nats_channel(url: str, namespace: str, timeout: float = 5.0) -> Channel:
    """A channel to the router over NATS (one connection per command, as the CLI's)."""

    async def send(command: bytes) -> bytes:
        from meterseal.services.nats_bus import connect_nats

        nc = await connect_nats(url, max_reconnect_attempts=1)
        try:
            message = await nc.request(f"{namespace}.op", command, timeout=timeout)
            data: bytes = message.data
            return data
        finally:
            await nc.close()

    return send


class RouterConsent:
    """Consent of one customer at a time, via the router's operator channel."""

    def __init__(
        self,
        channel: Channel,
        operator_key: bytes,
        anonymizer: Anonymizer,
        store: Store,
        where: str,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.channel = channel
        self.operator_key = operator_key
        self.anonymizer = anonymizer
        self.store = store
        self.where = where  # the router's address, for the unreachable message
        self.clock = clock
        self.nonce = nonce

    async def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        signed = operator_command(
            self.operator_key, command, now=self.clock(), nonce=self.nonce(16)
        )
        try:
            answer = cbor2.loads(await self.channel(signed))
        except Exception as exc:  # any transport failure means the same to a customer
            raise RouterUnreachable(f"the router at {self.where} did not answer: {exc}") from exc
        if type(answer) is not dict or not answer.get("ok"):
            why = answer.get("detail", answer) if type(answer) is dict else answer
            raise RouterUnreachable(f"the router at {self.where} refused: {why}")
        return answer

    def meters(self, customer_id: str) -> list[MeterPseudonym]:
        """The customer's meters and pseudonyms (from the store: theirs only)."""
        return customer_pseudonyms(self.store, self.anonymizer, customer_id)

    async def view(self, customer_id: str) -> ConsentView:
        """The customer's meters, each app with its consent, and the other receivers."""
        meters = await asyncio.to_thread(self.meters, customer_id)  # a store query
        answer = await self._ask({"op": "consents"})
        mine = {m.pseudonym for m in meters}
        consented: set[str] = set()
        for pseudonym, apps in answer.get("consents", []):
            if bytes(pseudonym) in mine:
                consented.update(str(a) for a in apps)
        apps, others = [], []
        for name, (role, state) in sorted(answer.get("members", {}).items()):
            if role == "app":
                on = name in consented
                apps.append(AppRow(name, role, state, on, WITH_CONSENT if on else WITHOUT_CONSENT))
            elif role in RECEIVES:
                others.append(AppRow(name, role, state, False, RECEIVES[role]))
        return ConsentView(tuple(meters), tuple(apps), tuple(others))

    async def change(self, customer_id: str, app: str, grant: bool) -> str:
        """Grant or withdraw `app`'s access to every meter of the customer; what it does now."""
        meters = await asyncio.to_thread(self.meters, customer_id)  # a store query
        if not meters:
            raise RouterUnreachable("no meter is registered to you: there is nothing to share")
        view = await self.view(customer_id)
        if app not in {a.name for a in view.apps}:
            raise LookupError(app)
        done: list[str] = []
        for meter in meters:
            op = "grant" if grant else "revoke"
            try:
                await self._ask({"op": op, "customer": meter.pseudonym, "app": app})
            except RouterUnreachable as exc:
                if not done:
                    raise
                raise PartlyChanged(  # which meters changed: the customer can choose again
                    f"{exc}; changed for meter(s) {', '.join(done)} only: choose again to finish",
                    tuple(done),
                ) from exc
            done.append(meter.meter_id)
        if grant:
            return f"{app} now receives your raw readings (every reading), from the next ones on."
        return (
            f"{app} no longer receives your readings: regional loads only (LOW) from now on; "
            "the key of your readings changed, so it cannot read new ones."
        )


def router_consent(
    url: str, keys: Path, namespace: str, deployment: Path, store: Store, passphrase: bytes | None
) -> RouterConsent:
    """Consent through the router at `url` (NATS), as `meterseal router consent` reaches it:
    the operator key from `keys` (the router's key directory), the pseudonyms from the
    deployment's anonymization key (both read with `passphrase` when set)."""
    from meterseal.crypto.at_rest import read_secret_file
    from meterseal.dissemination.cli_serve import OPERATOR_KEY
    from meterseal.dissemination.customers import deployment_anonymizer
    from meterseal.runtime.nats_endpoint import shown

    operator_key = read_secret_file(keys / OPERATOR_KEY, passphrase)
    anonymizer = deployment_anonymizer(deployment, passphrase)
    where = f"{shown(url)} ({namespace})"
    return RouterConsent(nats_channel(url, namespace), operator_key, anonymizer, store, where)
