"""Anonymization: meter id to a keyed pseudonym; the key stays on the trusted side."""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_LENGTH = 16
_LABEL = b"meterseal pseudonym v1\x00"


class Anonymizer:
    """HMAC-SHA-256 pseudonyms: stable per meter, unlinkable to it without the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the anonymization key must be at least 32 bytes")
        self._key = key
        self._cache: dict[str, bytes] = {}

    def pseudonym(self, meter_id: str) -> bytes:
        """The 16-byte pseudonym of `meter_id`."""
        value = self._cache.get(meter_id)
        if value is None:
            mac = hmac.new(self._key, _LABEL + meter_id.encode(), hashlib.sha256)
            value = self._cache[meter_id] = mac.digest()[:PSEUDONYM_LENGTH]
        return value

    def __repr__(self) -> str:
        return "Anonymizer(key=<hidden>)"
