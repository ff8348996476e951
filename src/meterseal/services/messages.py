"""What the services put on the bus: CBOR batches, sealed where they carry plaintext readings.

The bus is untrusted (ARCHITECTURE.md): it may see sealed packets, never a reading in the
clear. So the verified batch from open/verify to anonymize/store is AES-256-GCM under the
stage link key, which only the trusted stages hold, with the stream name as associated data.
A body that fails to decode or authenticate is `BusMessageError` (the worker quarantines it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meterseal.acquisition.records import AcceptedReading, Rejection
from meterseal.acquisition.stages import Incoming, StageResult
from meterseal.crypto.envelope import Rng
from meterseal.errors import MetersealError
from meterseal.model import phasor_from_json, phasor_to_json

STAGE_KEY_BYTES = 32
_NONCE_BYTES = 12
_LINK_LABEL = b"meterseal stage link v1\x00"
BAD_BUS_MESSAGE = "bad_bus_message"  # quarantine reason of a bus message that is not ours


class BusMessageError(MetersealError):
    """A bus message is malformed or not sealed by a trusted stage."""


def _loads(body: bytes, what: str) -> Any:
    try:
        return cbor2.loads(body)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise BusMessageError(f"{what} is not CBOR: {exc}") from exc


# -- packets: receiver -> open/verify (sealed packets need no further protection) ----------


def encode_packets(items: Sequence[Incoming]) -> bytes:
    """A receiver's batch of sealed packets with arrival time and source."""
    return cbor2.dumps([[i.data, i.received_at, i.source] for i in items])


def decode_packets(body: bytes) -> list[Incoming]:
    """The inverse of `encode_packets`; BusMessageError if the shape is wrong."""
    rows = _loads(body, "a packet batch")
    if not isinstance(rows, list) or not all(_is_packet_row(row) for row in rows):
        raise BusMessageError("a packet batch is not a list of [bytes, time, source]")
    return [Incoming(data, float(at), source) for data, at, source in rows]


def _is_packet_row(row: object) -> bool:
    return (
        isinstance(row, list)
        and len(row) == 3
        and isinstance(row[0], bytes)
        and isinstance(row[1], int | float)
        and isinstance(row[2], str)
    )


# -- verified: open/verify -> anonymize/store (sealed under the stage link key) ------------


def _reading_row(r: AcceptedReading) -> list[Any]:
    phasor = phasor_to_json(r.phasor) if r.phasor is not None else None
    return [
        r.meter_id,
        r.counter,
        r.timestamp,
        r.interval,
        r.energy_wh,
        r.suite,
        r.signed_original,
        r.sent_at,
        r.received_at,
        r.region_id,
        phasor,
        r.source,
    ]


def _reading(row: list[Any]) -> AcceptedReading:
    meter, counter, timestamp, interval, energy, suite, original, sent, received = row[:9]
    region, phasor, source = row[9:]
    return AcceptedReading(
        meter_id=meter,
        counter=counter,
        timestamp=timestamp,
        interval=interval,
        energy_wh=energy,
        suite=suite,
        signed_original=original,
        sent_at=sent,
        received_at=received,
        region_id=region,
        pseudonym=b"",
        phasor=phasor_from_json(phasor) if phasor is not None else None,
        source=source,
    )


def seal_verified(result: StageResult, key: bytes, stream: str, *, rng: Rng = os.urandom) -> bytes:
    """The verified batch, encrypted and authenticated for the next trusted stage."""
    body = cbor2.dumps(
        [
            [_reading_row(r) for r in result.accepted],
            [[r.reason, r.packet, r.received_at, r.source] for r in result.rejected],
            result.order,
            result.sealed,
        ]
    )
    nonce = rng(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, body, _LINK_LABEL + stream.encode())


def open_verified(blob: bytes, key: bytes, stream: str) -> StageResult:
    """The inverse of `seal_verified`; BusMessageError if forged, altered or malformed."""
    nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
    try:
        body = AESGCM(key).decrypt(nonce, sealed, _LINK_LABEL + stream.encode())
    except (InvalidTag, ValueError) as exc:
        raise BusMessageError("a verified batch failed authentication") from exc
    accepted, rejected, order, sealed = _loads(body, "a verified batch")
    return StageResult(
        [_reading(row) for row in accepted],
        [Rejection(reason, packet, at, source) for reason, packet, at, source in rejected],
        list(order),
        list(sealed),
    )


# -- billing requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class BillOrder:
    """Ask the billing service for one customer's bill over [start, end)."""

    request_id: str
    customer_id: str
    start: int
    end: int
    tariff: str  # id, optionally @version

    def encode(self) -> bytes:
        """CBOR for the billing stream."""
        return cbor2.dumps([self.request_id, self.customer_id, self.start, self.end, self.tariff])

    @classmethod
    def decode(cls, body: bytes) -> BillOrder:
        """The inverse of `encode`."""
        row = _loads(body, "a bill order")
        if not (isinstance(row, list) and len(row) == 5):
            raise BusMessageError("a bill order is not [id, customer, start, end, tariff]")
        request_id, customer, start, end, tariff = row
        if not all(isinstance(v, str) for v in (request_id, customer, tariff)):
            raise BusMessageError("a bill order's id, customer and tariff must be text")
        if not (isinstance(start, int) and isinstance(end, int)):
            raise BusMessageError("a bill order's period must be integers")
        return cls(request_id, customer, start, end, tariff)


@dataclass(frozen=True)
class BillOutcome:
    """What became of a bill order: the bill id and its seconds, or the error."""

    request_id: str
    bill_id: str
    seconds: float
    error: str = ""

    def encode(self) -> bytes:
        """CBOR for the notification."""
        return cbor2.dumps([self.request_id, self.bill_id, self.seconds, self.error])

    @classmethod
    def decode(cls, body: bytes) -> BillOutcome:
        """The inverse of `encode`."""
        request_id, bill_id, seconds, error = _loads(body, "a bill outcome")
        return cls(str(request_id), str(bill_id), float(seconds), str(error))
