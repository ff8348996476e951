"""Unsigned readings: imported values no meter signed, as canonical CBOR records.

A utility's existing data (a CSV or Green Button export) carries no meter signature. Such a
reading is kept apart from the signed originals, as a record that says what it is:
`["meterseal unsigned reading v1", meter, timestamp, interval, energy_wh, quality]`. On a bill
made with unsigned readings allowed, the record's bytes take the place of a signed original in
the hash chain and the Merkle tree, and its manifest key is (meter, -timestamp): meter
counters are never negative, so the two kinds of keys cannot collide.
"""

from __future__ import annotations

from typing import NamedTuple

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.errors import MetersealError

LABEL = "meterseal unsigned reading v1"
QUALITIES = ("measured", "estimated", "substituted")
_PREFIX = cose.dumps([LABEL])[1:]  # the label's bytes, right after the array head


class UnsignedRecordError(MetersealError):
    """Bytes that should be an unsigned-reading record are not one."""


class UnsignedReading(NamedTuple):
    """One imported reading no meter signed: whose, when, how long, how much, how good."""

    meter_id: str
    timestamp: int  # start of the interval, Unix seconds (> 0)
    interval: int  # seconds
    energy_wh: int
    quality: str = "measured"

    @property
    def counter(self) -> int:
        """The reading's key in bills and manifests: minus its timestamp (never a meter's)."""
        return -self.timestamp

    def to_cbor(self) -> bytes:
        """The record's canonical CBOR: the bytes a bill chains and hashes."""
        return cose.dumps([LABEL, *self])


def is_unsigned(packet: bytes) -> bool:
    """Whether `packet` is an unsigned-reading record (not a meter's COSE_Sign1)."""
    return packet[1 : 1 + len(_PREFIX)] == _PREFIX


def unsigned_from_cbor(data: bytes) -> UnsignedReading:
    """Decode and check a record; UnsignedRecordError if it is not one."""
    try:
        item = cose.loads_strict(data)
    except CoseFormatError as exc:
        raise UnsignedRecordError(f"not an unsigned reading: {exc}") from None
    if type(item) is not list or len(item) != 6 or item[0] != LABEL:
        raise UnsignedRecordError("not an unsigned reading: wrong shape or label")
    _, meter_id, timestamp, interval, energy_wh, quality = item
    ints = (timestamp, interval, energy_wh)
    if type(meter_id) is not str or type(quality) is not str or {type(v) for v in ints} != {int}:
        raise UnsignedRecordError("not an unsigned reading: wrong field types")
    if timestamp <= 0 or interval <= 0 or energy_wh < 0 or quality not in QUALITIES:
        raise UnsignedRecordError("not an unsigned reading: a field is out of range")
    return UnsignedReading(meter_id, timestamp, interval, energy_wh, quality)
