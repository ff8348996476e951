"""What a would-be member sends the publisher: who it is, its attested key, what it wants.

Wire form (canonical CBOR map): member, role, key (raw X25519, 32 bytes), nonce (the
publisher's challenge, 32 bytes), quote (trust.attestation quote bytes; empty for public
apps) and subscriptions, an array of [level, subscription in CBOR form].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from meterseal.dissemination.errors import AdmissionRefused, DisseminationError, Reason
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.subscription import Subscription, from_cbor

MEMBER_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")  # also a NATS subject token
NONCE_BYTES: Final = 32
KEY_BYTES: Final = 32
MAX_SUBSCRIPTIONS: Final = 64
MAX_REQUEST: Final = 256 * 1024
_FIELDS = frozenset({"member", "role", "key", "nonce", "quote", "subscriptions"})


def check_member_name(name: object) -> str:
    """`name` if it is a valid member name (1-64 of A-Z a-z 0-9 _ -)."""
    if type(name) is not str or not MEMBER_NAME.fullmatch(name):
        raise AdmissionRefused(Reason.MALFORMED_REQUEST, f"bad member name {name!r}")
    return name


@dataclass(frozen=True)
class AdmissionRequest:
    """A member's request to be admitted with `role` and these subscriptions."""

    member: str
    role: Role
    public_key: bytes
    nonce: bytes
    quote: bytes
    subscriptions: tuple[tuple[PrivacyLevel, Subscription], ...] = ()

    def encode(self) -> bytes:
        """Canonical CBOR of the request."""
        value = {
            "member": self.member,
            "role": self.role.value,
            "key": self.public_key,
            "nonce": self.nonce,
            "quote": self.quote,
            "subscriptions": [[int(lv), s.to_cbor()] for lv, s in self.subscriptions],
        }
        encoded: bytes = cbor2.dumps(value, canonical=True)
        return encoded

    @classmethod
    def decode(cls, data: object) -> AdmissionRequest:
        """The request in `data`; AdmissionRefused(MALFORMED_REQUEST) if it is not one."""
        if type(data) is not bytes or len(data) > MAX_REQUEST:
            raise AdmissionRefused(Reason.MALFORMED_REQUEST, "a request is bytes of <= 256 KiB")
        try:
            value: Any = cbor2.loads(data)
        except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as exc:
            raise AdmissionRefused(Reason.MALFORMED_REQUEST, "not CBOR") from exc
        if type(value) is not dict or set(value) != _FIELDS:
            raise AdmissionRefused(Reason.MALFORMED_REQUEST, f"a request has {sorted(_FIELDS)}")
        return cls(
            check_member_name(value["member"]),
            _role(value["role"]),
            _bytes(value["key"], KEY_BYTES, "key"),
            _bytes(value["nonce"], NONCE_BYTES, "nonce"),
            _bytes(value["quote"], None, "quote"),
            _subscriptions(value["subscriptions"]),
        )


def _role(value: object) -> Role:
    try:
        return Role(value if type(value) is str else "")
    except ValueError:
        raise AdmissionRefused(Reason.MALFORMED_REQUEST, f"unknown role {value!r}") from None


def _bytes(value: object, length: int | None, name: str) -> bytes:
    if type(value) is not bytes or (length is not None and len(value) != length):
        size = f" of {length} bytes" if length else ""
        raise AdmissionRefused(Reason.MALFORMED_REQUEST, f"{name} must be bytes{size}")
    return value


def _subscriptions(value: object) -> tuple[tuple[PrivacyLevel, Subscription], ...]:
    if type(value) is not list or len(value) > MAX_SUBSCRIPTIONS:
        raise AdmissionRefused(
            Reason.MALFORMED_REQUEST, f"subscriptions: an array of <= {MAX_SUBSCRIPTIONS}"
        )
    result = []
    for item in value:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int:
            raise AdmissionRefused(Reason.MALFORMED_REQUEST, "a subscription is [level, cbor]")
        try:
            level = PrivacyLevel(item[0])
            result.append((level, from_cbor(item[1])))
        except ValueError:
            raise AdmissionRefused(Reason.MALFORMED_REQUEST, "unknown level") from None
        except DisseminationError as exc:
            raise AdmissionRefused(Reason.MALFORMED_SUBSCRIPTION, exc.detail) from exc
    return tuple(result)
